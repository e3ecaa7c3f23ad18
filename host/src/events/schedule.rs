//! Fires functions' `schedules` from inside the host, for when it runs outside Knative (on
//! Knative a PingSource does it, and the host leaves it alone). Each schedule is one task
//! that sleeps until the next time its cron expression names, in its time zone, then
//! delivers the same event a PingSource would to that function alone; a reply travels on
//! as a Broker would send it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use tokio::task::JoinHandle;

use super::dispatch::Dispatcher;
use crate::manifest::schedule::{PING_TYPE, Schedule};

/// The schedule tasks; stopped when dropped.
#[derive(Debug, Default)]
pub struct Scheduler {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Scheduler {
    /// Starts a task per schedule of every function, delivering through `dispatcher`.
    /// `namespace` goes into the events' source, as Knative's would.
    pub fn start(
        dispatcher: &Arc<Dispatcher>,
        schedules: &[(usize, String, Schedule)],
        namespace: &str,
    ) -> Self {
        let tasks = schedules
            .iter()
            .map(|(function, function_name, schedule)| {
                let source = format!(
                    "/apis/v1/namespaces/{namespace}/pingsources/{function_name}-{}",
                    schedule.name
                );
                tokio::spawn(run(
                    dispatcher.clone(),
                    *function,
                    function_name.clone(),
                    schedule.clone(),
                    source,
                ))
            })
            .collect();
        Self { tasks }
    }

    /// How many schedules run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether none does.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

async fn run(
    dispatcher: Arc<Dispatcher>,
    function: usize,
    function_name: String,
    schedule: Schedule,
    source: String,
) {
    let cron = schedule.parsed();
    let tz = schedule.tz();
    loop {
        let now = Utc::now();
        let next = match next_after(&cron, tz, now) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(function = function_name, schedule = schedule.name, error = %e, "schedule has no next time; it stops");
                return;
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let mut builder = EventBuilderV10::new()
            .id(uuid::Uuid::new_v4().to_string())
            .source(source.clone())
            .ty(PING_TYPE)
            .time(next);
        if let Some((data, content_type)) = &schedule.data {
            builder = builder.data(*content_type, data.clone());
        }
        let Ok(mut event) = builder.build() else {
            continue;
        };
        event.set_extension("schedule", schedule.name.clone());
        tracing::info!(
            function = function_name,
            schedule = schedule.name,
            "schedule fired"
        );
        // Failures are logged where the delivery failed; the next tick comes regardless,
        // as a PingSource's does.
        let _ = dispatcher.deliver_to(function, event).await;
    }
}

/// The first time after `now` that `cron` names, read in time zone `tz` (as a PingSource
/// reads its `timezone`): "at 03:00" is 03:00 there, whatever its offset that day.
fn next_after(
    cron: &croner::Cron,
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, croner::errors::CronError> {
    let next = cron.find_next_occurrence(&now.with_timezone(&tz), false)?;
    Ok(next.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn next(cron: &str, tz: &str, now: &str) -> DateTime<Utc> {
        let cron = croner::parser::CronParser::new().parse(cron).unwrap();
        next_after(&cron, tz.parse().unwrap(), at(now)).unwrap()
    }

    #[test]
    fn a_schedule_fires_at_its_times_in_its_time_zone() {
        // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
        let nightly = "0 3 * * *";
        assert_eq!(
            next(nightly, "Europe/Berlin", "2026-12-06T00:00:00Z"),
            at("2026-12-06T02:00:00Z")
        );
        assert_eq!(
            next(nightly, "Europe/Berlin", "2026-07-06T00:00:00Z"),
            at("2026-07-06T01:00:00Z")
        );
        // Without a time zone, UTC; at one of its times, the next one.
        assert_eq!(
            next(nightly, "UTC", "2026-12-06T03:00:00Z"),
            at("2026-12-07T03:00:00Z")
        );
        assert_eq!(
            next("*/5 * * * *", "Asia/Kolkata", "2026-12-06T10:01:00Z"),
            at("2026-12-06T10:05:00Z"),
            "a half-hour offset still lands on minutes that divide by five there"
        );
    }
}
