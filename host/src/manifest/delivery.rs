//! How a Knative Broker delivers events: retries, backoff, a timeout per attempt, and where
//! an event goes when every attempt failed (the dead-letter sink). `[deploy] delivery` is
//! the Broker's default; a function's `delivery` is its Trigger's. Durations are human in
//! the manifest (`"200ms"`) and ISO 8601 in the rendered YAML (`PT0.2S`).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::limits::duration;
use super::{Ctx, ManifestError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDelivery {
    retry: Option<Spanned<i64>>,
    backoff_policy: Option<Spanned<String>>,
    backoff_delay: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    dead_letter: Option<Spanned<RawDeadLetter>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadLetter {
    service: Option<String>,
    function: Option<String>,
    uri: Option<String>,
}

/// Delivery settings, as Knative's `delivery` spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Attempts after the first.
    pub retry: Option<u32>,
    /// How the wait between attempts grows.
    pub backoff_policy: Option<BackoffPolicy>,
    /// The first wait.
    pub backoff_delay: Option<Duration>,
    /// How long one attempt may take.
    pub timeout: Option<Duration>,
    /// Where events go when every attempt failed.
    pub dead_letter: Option<DeadLetter>,
}

/// Knative's backoff policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackoffPolicy {
    /// `backoff_delay * n`.
    Linear,
    /// `backoff_delay * 2^n`.
    Exponential,
}

/// Where dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// A Knative Service by name (outside this manifest or in it).
    Service(String),
    /// A function of this manifest, on its own delivery path.
    Function(String),
    /// An absolute URI.
    Uri(String),
}

/// Reads delivery settings; `what` names them in errors (`delivery`, `deploy.delivery`).
pub(super) fn parse(
    ctx: &Ctx<'_>,
    raw: &Spanned<RawDelivery>,
    what: &str,
) -> Result<Delivery, ManifestError> {
    let r = raw.get_ref();
    let retry = r
        .retry
        .as_ref()
        .map(|n| match u32::try_from(*n.get_ref()) {
            Ok(v) if v <= 100 => Ok(v),
            _ => Err(ctx.error(
                n.span(),
                format!(
                    "`{what}.retry` must be 0 to 100 attempts, got {}",
                    n.get_ref()
                ),
            )),
        })
        .transpose()?;
    let backoff_policy = r
        .backoff_policy
        .as_ref()
        .map(|p| match p.get_ref().as_str() {
            "linear" => Ok(BackoffPolicy::Linear),
            "exponential" => Ok(BackoffPolicy::Exponential),
            other => Err(ctx.error(
                p.span(),
                format!(
                    "`{what}.backoff_policy` must be \"linear\" or \"exponential\", got {other:?}"
                ),
            )),
        })
        .transpose()?;
    let positive =
        |key: &str, v: &Option<Spanned<String>>| -> Result<Option<Duration>, ManifestError> {
            let Some(v) = v else { return Ok(None) };
            let d = duration(ctx, &format!("{what}.{key}"), v)?;
            if d.is_zero() {
                return Err(ctx.error(v.span(), format!("`{what}.{key}` must be more than 0")));
            }
            Ok(Some(d))
        };
    let backoff_delay = positive("backoff_delay", &r.backoff_delay)?;
    let timeout = positive("timeout", &r.timeout)?;
    let dead_letter = r
        .dead_letter
        .as_ref()
        .map(|d| {
            let dl = d.get_ref();
            match (&dl.service, &dl.function, &dl.uri) {
                (Some(s), None, None) => Ok(DeadLetter::Service(s.clone())),
                (None, Some(f), None) => Ok(DeadLetter::Function(f.clone())),
                (None, None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                    Ok(DeadLetter::Uri(u.clone()))
                }
                _ => Err(ctx.error(
                    d.span(),
                    format!("`{what}.dead_letter` must be one of {{ service = \"name\" }}, {{ function = \"name\" }} or {{ uri = \"http(s)://...\" }}"),
                )),
            }
        })
        .transpose()?;
    Ok(Delivery {
        retry,
        backoff_policy,
        backoff_delay,
        timeout,
        dead_letter,
    })
}

/// A duration as ISO 8601, the form Knative's delivery spec takes: `PT0.2S`, `PT30S`.
pub fn iso8601(d: Duration) -> String {
    let millis = d.subsec_millis();
    if millis == 0 {
        format!("PT{}S", d.as_secs())
    } else {
        let fraction = format!("{millis:03}");
        format!("PT{}.{}S", d.as_secs(), fraction.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_as_iso_8601() {
        assert_eq!(iso8601(Duration::from_millis(200)), "PT0.2S");
        assert_eq!(iso8601(Duration::from_secs(30)), "PT30S");
        assert_eq!(iso8601(Duration::from_millis(1500)), "PT1.5S");
        assert_eq!(iso8601(Duration::from_millis(1005)), "PT1.005S");
    }
}
