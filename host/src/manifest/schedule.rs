//! A function's `schedules`: periodic events, the same on a laptop and on Knative. On
//! Knative each is a PingSource delivering to the function; outside Knative `wasmfn serve`
//! fires them itself (events/schedule.rs). Either way the event is Knative's ping event:
//! type `dev.knative.sources.ping` (a PingSource cannot set another), source
//! `/apis/v1/namespaces/<namespace>/pingsources/<name>`, the schedule's name in the
//! `schedule` extension and its `data` as the event's data.

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, ManifestError};

/// The type of every scheduled event, as Knative's PingSource sends it.
pub const PING_TYPE: &str = "dev.knative.sources.ping";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSchedule {
    cron: Spanned<String>,
    name: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    data: Option<toml::Value>,
}

/// One schedule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Unique within its function; names the PingSource `<function>-<name>`.
    pub name: String,
    /// The cron expression as written: 5 fields (minute to weekday, as Knative takes
    /// them), or 6 with seconds first (only `wasmfn serve` can fire those).
    pub cron: String,
    /// Whether `cron` has a seconds field.
    pub seconds: bool,
    /// An IANA time zone (`Europe/Berlin`); UTC when unset.
    pub timezone: Option<String>,
    /// The event's data and its content type.
    pub data: Option<(String, &'static str)>,
}

impl Schedule {
    /// The parsed expression (checked when the manifest was read).
    pub fn parsed(&self) -> croner::Cron {
        croner::parser::CronParser::new()
            .parse(&self.cron)
            .expect("checked when the manifest was read")
    }

    /// The time zone (checked when the manifest was read).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.as_deref().map_or(chrono_tz::UTC, |tz| {
            tz.parse().expect("checked when the manifest was read")
        })
    }
}

/// Reads the schedules of function `function`.
pub(super) fn parse(
    ctx: &Ctx<'_>,
    function: &str,
    raw: &[Spanned<RawSchedule>],
) -> Result<Vec<Schedule>, ManifestError> {
    let mut schedules: Vec<Schedule> = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let r = s.get_ref();
        let cron = r.cron.get_ref().trim().to_string();
        let parsed = croner::parser::CronParser::new().parse(&cron).map_err(|e| {
            ctx.error(
                r.cron.span(),
                format!("`cron` {cron:?} is not a cron expression (minute hour day month weekday, e.g. \"*/5 * * * *\"; or with seconds first): {e}"),
            )
        })?;
        let seconds = !cron.starts_with('@') && cron.split_whitespace().count() == 6;
        drop(parsed);
        let name = match &r.name {
            Some(n) => {
                let v = n.get_ref();
                let ok = !v.is_empty()
                    && v.len() <= 40
                    && v.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    return Err(ctx.error(
                        n.span(),
                        format!("schedule name {v:?} must be 1-40 of a-z, 0-9 and '-'"),
                    ));
                }
                v.clone()
            }
            None => format!("schedule-{i}"),
        };
        if schedules.iter().any(|o| o.name == name) {
            return Err(ctx.error(
                s.span(),
                format!("function `{function}` has two schedules named `{name}`"),
            ));
        }
        let timezone = match &r.timezone {
            None => None,
            Some(tz) => {
                tz.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
                    ctx.error(
                        tz.span(),
                        format!(
                            "`timezone` {:?} is not an IANA time zone such as \"Europe/Berlin\"",
                            tz.get_ref()
                        ),
                    )
                })?;
                Some(tz.get_ref().clone())
            }
        };
        let data = r.data.as_ref().map(|d| match d {
            toml::Value::String(text) => (text.clone(), "text/plain"),
            other => (
                serde_json::to_string(other).expect("TOML values are JSON values"),
                "application/json",
            ),
        });
        schedules.push(Schedule {
            name,
            cron,
            seconds,
            timezone,
            data,
        });
    }
    Ok(schedules)
}
