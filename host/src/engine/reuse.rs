//! Instance reuse for a WASI 0.2 function that opts in (`reuse = { .. }` in its manifest
//! entry): an instance that served a request well waits, idle, for the function's next one,
//! until it has served `max_requests` or sat idle for `idle`. One request at a time per
//! instance: a 0.2 instance cannot run two calls at once. The newest idle instance goes
//! first, so the fewest stay warm; a sweeper drops the ones left idle too long, so a
//! function with no traffic gives its instance-pool slots back.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::invocation::Held;
use crate::manifest::Reuse;

/// A function's reuse limits and its idle instances.
pub(super) struct IdleInstances {
    max_requests: u32,
    idle: Duration,
    label: &'static str,
    metrics: Arc<crate::metrics::Metrics>,
    idle_instances: Arc<Mutex<Idle>>,
}

#[derive(Default)]
struct Idle {
    /// Each with when it became idle, oldest first.
    instances: Vec<(Instant, Held)>,
    sweeping: bool,
}

impl IdleInstances {
    /// The reuse a WASI 0.2 function asked for; None when it would serve one request per
    /// instance anyway.
    pub(super) fn sequential(
        spec: &Reuse,
        label: &'static str,
        metrics: &Arc<crate::metrics::Metrics>,
    ) -> Option<Self> {
        let max_requests = spec.max_requests_or_default();
        (max_requests > 1).then(|| Self {
            max_requests,
            idle: spec.idle_or_default(),
            label,
            metrics: metrics.clone(),
            idle_instances: Arc::default(),
        })
    }

    /// The newest idle instance, if one is waiting and not past its idle time.
    pub(super) fn take(&self) -> Option<Held> {
        let mut idle = self.idle_instances.lock().unwrap();
        // The newest is the likeliest still within its idle time; when it is not, the
        // older ones are not either, and the sweeper drops them outside a request.
        let (since, _) = idle.instances.last()?;
        if since.elapsed() >= self.idle {
            return None;
        }
        idle.instances.pop().map(|(_, held)| held)
    }

    /// Keeps `held` for the next request, unless it has served its share.
    pub(super) fn put(&self, held: Held) {
        if held.served >= self.max_requests {
            self.metrics.instance_retired(self.label, held.served);
            return;
        }
        let mut idle = self.idle_instances.lock().unwrap();
        idle.instances.push((Instant::now(), held));
        if !idle.sweeping {
            idle.sweeping = true;
            tokio::spawn(sweep(
                Arc::downgrade(&self.idle_instances),
                self.idle,
                self.label,
                self.metrics.clone(),
            ));
        }
    }
}

/// Drops the instances idle for longer than `idle`, until none is left idle.
async fn sweep(
    list: Weak<Mutex<Idle>>,
    idle: Duration,
    label: &'static str,
    metrics: Arc<crate::metrics::Metrics>,
) {
    loop {
        tokio::time::sleep(idle).await;
        let Some(list) = list.upgrade() else {
            return;
        };
        let (expired, more): (Vec<(Instant, Held)>, bool) = {
            let mut guard = list.lock().unwrap();
            let now = Instant::now();
            let fresh = guard
                .instances
                .iter()
                .position(|(since, _)| now.duration_since(*since) < idle)
                .unwrap_or(guard.instances.len());
            let expired = guard.instances.drain(..fresh).collect();
            guard.sweeping = !guard.instances.is_empty();
            (expired, guard.sweeping)
        };
        // Dropping a store returns its instance-pool slot; not under the lock.
        for (_, held) in expired {
            metrics.instance_retired(label, held.served);
        }
        if !more {
            return;
        }
    }
}
