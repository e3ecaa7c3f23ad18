//! Fires functions' `schedules` from inside the host, for when it runs outside Knative (on
//! Knative a PingSource does it, and the host leaves it alone). Each schedule is one task
//! that sleeps until the next time its cron expression names, in its time zone, then
//! delivers the same event a PingSource would to that function alone; a reply travels on
//! as a Broker would send it.

use std::sync::Arc;

use chrono::Utc;
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
        let now = Utc::now().with_timezone(&tz);
        let next = match cron.find_next_occurrence(&now, false) {
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
            .time(next.with_timezone(&Utc));
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
