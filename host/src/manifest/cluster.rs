//! What the manifest says of the cluster around its Knative Services: where their traffic
//! comes from and may go (the NetworkPolicy `deploy render` derives from the functions'
//! grants), and when their minimum scale changes on a schedule (CronJobs that patch the
//! Service).

use serde::Deserialize;
use toml::Spanned;

use super::hosts::AllowedHost;
use super::{Ctx, ManifestError};

/// Where Knative's ingress runs when `[deploy] ingress_namespace` is not set: Kourier,
/// Knative's default networking layer.
pub const DEFAULT_INGRESS_NAMESPACE: &str = "kourier-system";

/// The private address ranges an outside host's egress rule leaves out (RFC 1918): the
/// cluster's pods and services are somewhere in them, and an outside grant must not open
/// them.
pub const DEFAULT_PRIVATE_RANGES: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// The image the scaling CronJobs run `kubectl` in, as the seed's do.
pub const DEFAULT_KUBECTL_IMAGE: &str = "bitnami/kubectl:latest";

/// `[deploy]`'s network settings, for every Service's NetworkPolicy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The namespace of the ingress gateway (Kourier's, Istio's, Contour's).
    pub ingress_namespace: String,
    /// The namespace Prometheus scrapes from, allowed to the serving port; `None`: no rule.
    pub monitoring_namespace: Option<String>,
    /// CIDRs an outside host's rule excludes.
    pub private_ranges: Vec<String>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            ingress_namespace: DEFAULT_INGRESS_NAMESPACE.to_string(),
            monitoring_namespace: None,
            private_ranges: DEFAULT_PRIVATE_RANGES.map(str::to_string).to_vec(),
        }
    }
}

/// One entry of a Service's `scaling_schedule`.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScaling {
    name: Spanned<String>,
    cron: Spanned<String>,
    min_scale: u32,
    timezone: Option<Spanned<String>>,
}

/// From `cron` on, the Service keeps at least `min_scale` pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSchedule {
    /// Names the CronJob `<service>-<name>`.
    pub name: String,
    /// Five fields: minute hour day month weekday.
    pub cron: String,
    /// The new `autoscaling.knative.dev/min-scale`.
    pub min_scale: u32,
    /// An IANA time zone; `None`: the cluster's (UTC on most).
    pub timezone: Option<String>,
}

/// Kubernetes appends 11 characters to a CronJob's name for each Job, and a Job's name is
/// at most 63.
const CRONJOB_NAME_MAX: usize = 52;

/// A Service's `scaling_schedule`, checked as Kubernetes and Knative would.
pub(crate) fn scaling(
    ctx: &Ctx<'_>,
    service: &str,
    raw: &[Spanned<RawScaling>],
    max_scale: Option<u32>,
) -> Result<Vec<ScaleSchedule>, ManifestError> {
    let mut out: Vec<ScaleSchedule> = Vec::with_capacity(raw.len());
    for entry in raw {
        let r = entry.get_ref();
        let name = r.name.get_ref();
        let full = format!("{service}-{name}");
        let label_ok = !name.is_empty()
            && !name.starts_with('-')
            && !name.ends_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !label_ok || full.len() > CRONJOB_NAME_MAX {
            return Err(ctx.error(
                r.name.span(),
                format!("scaling schedule name {name:?} must be a-z, 0-9 and '-', and `{full}` (the CronJob's name) at most {CRONJOB_NAME_MAX} characters"),
            ));
        }
        if out.iter().any(|o| &o.name == name) {
            return Err(ctx.error(
                entry.span(),
                format!("service `{service}` has two scaling schedules named `{name}`"),
            ));
        }
        let cron = r.cron.get_ref().trim();
        // A CronJob takes the five standard fields; croner alone would also take seconds.
        let five = !cron.starts_with('@') && cron.split_whitespace().count() == 5;
        let parsed = croner::parser::CronParser::new().parse(cron);
        if !five || parsed.is_err() {
            return Err(ctx.error(
                r.cron.span(),
                format!("`cron` {cron:?} is not a five-field cron expression (minute hour day month weekday, e.g. \"0 8 * * 1-5\"), as a CronJob takes"),
            ));
        }
        if let Some(max) = max_scale.filter(|&m| m != 0 && r.min_scale > m) {
            return Err(ctx.error(
                entry.span(),
                format!("scaling schedule `{name}` sets min_scale {} above the service's max_scale {max}", r.min_scale),
            ));
        }
        let timezone = r
            .timezone
            .as_ref()
            .map(|tz| {
                tz.get_ref()
                    .parse::<chrono_tz::Tz>()
                    .map(|_| tz.get_ref().clone())
                    .map_err(|_| {
                        ctx.error(
                            tz.span(),
                            format!(
                                "`timezone` {:?} is not an IANA time zone such as \"America/New_York\"",
                                tz.get_ref()
                            ),
                        )
                    })
            })
            .transpose()?;
        out.push(ScaleSchedule {
            name: name.clone(),
            cron: cron.to_string(),
            min_scale: r.min_scale,
            timezone,
        });
    }
    Ok(out)
}

/// A Service's `egress`: destinations its functions reach that the manifest cannot see,
/// such as a Redis whose URL comes from a Secret, in `allowed_outbound_hosts`' syntax.
pub(crate) fn egress(
    ctx: &Ctx<'_>,
    raw: &[Spanned<String>],
) -> Result<Vec<AllowedHost>, ManifestError> {
    raw.iter()
        .map(|e| {
            AllowedHost::parse(e.get_ref())
                .map_err(|m| ctx.error(e.span(), format!("`egress` entry {m}")))
        })
        .collect()
}

/// An IPv4 or IPv6 CIDR, as a NetworkPolicy's `ipBlock` takes it.
pub(crate) fn cidr(text: &str) -> Result<(), String> {
    let bad = || format!("{text:?} is not a CIDR such as \"10.0.0.0/8\"");
    let (address, bits) = text.split_once('/').ok_or_else(bad)?;
    let address: std::net::IpAddr = address.parse().map_err(|_| bad())?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    match bits.parse::<u8>() {
        Ok(b) if b <= max => Ok(()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_checked() {
        for good in ["10.0.0.0/8", "192.168.1.7/32", "fd00::/8", "0.0.0.0/0"] {
            assert_eq!(cidr(good), Ok(()), "{good}");
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "x/8", "fd00::/129"] {
            assert!(cidr(bad).is_err(), "{bad}");
        }
    }
}
