//! Prometheus metrics, served at `/.well-known/wasmfn/metrics` on the serving port (Knative
//! allows one user port and reserves 9090/9091). Recording costs an atomic add or a
//! histogram bucket per event; label sets use `&'static str` function names, interned once
//! per function at load, so the request path does not allocate for them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    function: &'static str,
    /// The function's version (manifest `versions`); empty for a function without.
    version: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    function: &'static str,
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    function: &'static str,
    version: &'static str,
    r#type: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why the host refused a request or closed a connection before a function answered; the
/// `reason` label of `wasmfn_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A new connection past `[server] max_connections` (503).
    Connections,
    /// A request past `[server] max_in_flight` (503).
    InFlight,
    /// A request past its function's `concurrency` (503).
    Concurrency,
    /// A request that found the instance pool full (503).
    Instances,
    /// A body larger than the function's `max_body` (413).
    BodyTooLarge,
    /// A connection that did not send a request head in time (closed).
    HeaderTimeout,
    /// A connection with no request for `idle_timeout` (closed).
    IdleTimeout,
}

impl Refusal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::InFlight => "in_flight",
            Refusal::Concurrency => "concurrency",
            Refusal::Instances => "instances",
            Refusal::BodyTooLarge => "body_too_large",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::IdleTimeout => "idle_timeout",
        }
    }
}

/// Every metric the host records.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<VersionLabels, Histogram>,
    instantiate_duration: Family<FunctionLabels, Histogram>,
    instance_requests: Family<FunctionLabels, Histogram>,
    events: Family<EventLabels, Counter>,
    event_lag: Family<FunctionLabels, Histogram>,
    emitted: Family<ResultLabels, Counter>,
    cache: Family<ResultLabels, Counter>,
    instances: Gauge,
    in_flight: Gauge,
    pool_capacity: Gauge,
    connections: Gauge,
    refused: Family<ReasonLabels, Counter>,
    stores_up: Family<StoreLabels, Gauge>,
    start_to_ready: Gauge<f64, AtomicU64>,
    start_to_first_request: Gauge<f64, AtomicU64>,
    first_request_seen: AtomicBool,
    started: Instant,
    event_types: Mutex<std::collections::HashSet<String>>,
}

/// Event types are chosen by senders, so their label values are capped: past this many
/// distinct types, further ones are counted as `(other)` instead of growing the registry.
pub const MAX_EVENT_TYPES: usize = 256;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Request latencies from 10 µs to ~84 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 2.0, 24))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry, which also marks the process start for the start-up metrics;
    /// `service`/`revision` labels come from Knative's `K_SERVICE` and
    /// `K_REVISION` where set.
    pub fn new() -> Self {
        let mut labels = Vec::new();
        for (label, var) in [("service", "K_SERVICE"), ("revision", "K_REVISION")] {
            if let Ok(v) = std::env::var(var)
                && !v.is_empty()
            {
                labels.push((label.into(), v.into()));
            }
        }
        let mut registry = Registry::with_prefix_and_labels("wasmfn", labels.into_iter());
        let requests = Family::default();
        registry.register(
            "requests",
            "HTTP requests by status and the function that answered (empty: none did, e.g. a 404, a refusal, the events path)",
            requests.clone(),
        );
        let request_duration = Family::<VersionLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from routing an HTTP request to its response head",
            request_duration.clone(),
        );
        let instantiate_duration = Family::<FunctionLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "instantiate_duration_seconds",
            "Time to instantiate a function from its pre-instance (one per request or event, or per instance where instances are reused)",
            instantiate_duration.clone(),
        );
        let instance_requests = Family::<FunctionLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(1.0, 2.0, 14))) as fn() -> Histogram,
        );
        registry.register(
            "instance_requests",
            "Requests each retired instance of a function that reuses instances served (a function with a fresh instance per request records none)",
            instance_requests.clone(),
        );
        let events = Family::default();
        registry.register(
            "events",
            "CloudEvents delivered to a function, by type and result (reply, accepted, retry, reject, error)",
            events.clone(),
        );
        let event_lag = Family::<FunctionLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(1e-3, 2.0, 22))) as fn() -> Histogram,
        );
        registry.register(
            "event_lag_seconds",
            "Time from an event's `time` to the start of its handling by a function (events without a time, and replayed ones, are not counted)",
            event_lag.clone(),
        );
        let emitted = Family::default();
        registry.register(
            "emitted_events",
            "Events emitted by functions or forwarded as replies, by result",
            emitted.clone(),
        );
        let cache = Family::default();
        registry.register(
            "component_cache",
            "Component loads by compile-cache result (hit, miss, rebuilt)",
            cache.clone(),
        );
        let instances = Gauge::default();
        registry.register(
            "instances_in_flight",
            "Live function instances",
            instances.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests admitted and not yet answered with a response head: what [server] max_in_flight limits",
            in_flight.clone(),
        );
        let pool_capacity = Gauge::default();
        registry.register(
            "pool_capacity_instances",
            "Instances the pooling allocator can hold (0 when allocating on demand)",
            pool_capacity.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open",
            connections.clone(),
        );
        let refused = Family::default();
        registry.register(
            "refused",
            "Requests and connections refused before reaching a function, by reason (connections, in_flight, concurrency, instances: 503; body_too_large: 413; header_timeout, idle_timeout: closed)",
            refused.clone(),
        );
        let stores_up = Family::default();
        registry.register(
            "store_up",
            "1 while a key-value store answers; 0 from an operation that failed to reach it until one succeeds",
            stores_up.clone(),
        );
        let start_to_ready = Gauge::default();
        registry.register(
            "start_to_ready_seconds",
            "Process start to listening with every function loaded",
            start_to_ready.clone(),
        );
        let start_to_first_request = Gauge::default();
        registry.register(
            "start_to_first_response_seconds",
            "Process start to the first response head: the cold start a scale-from-zero request sees",
            start_to_first_request.clone(),
        );
        Self {
            registry,
            requests,
            request_duration,
            instantiate_duration,
            instance_requests,
            events,
            event_lag,
            emitted,
            cache,
            instances,
            in_flight,
            pool_capacity,
            connections,
            refused,
            stores_up,
            start_to_ready,
            start_to_first_request,
            first_request_seen: AtomicBool::new(false),
            started: Instant::now(),
            event_types: Mutex::default(),
        }
    }

    /// Records whether the key-value store `store` is up (`wasmfn_store_up`).
    pub fn set_store_up(&self, store: &str, up: bool) {
        self.stores_up
            .get_or_create(&StoreLabels {
                store: store.to_string(),
            })
            .set(i64::from(up));
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The series `version` of `function` records each request into.
    pub fn series(&self, function: &'static str, version: &'static str) -> Series {
        Series {
            function,
            version,
            duration: self
                .request_duration
                .get_or_create(&VersionLabels { function, version })
                .clone(),
            statuses: Default::default(),
        }
    }

    /// One HTTP request answered through `series`.
    pub fn answered(&self, series: &Series, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            function: series.function,
            version: series.version,
            status,
        };
        let class = usize::from(status / 100).saturating_sub(1).min(4);
        let (first, counter) = series.statuses[class]
            .get_or_init(|| (status, self.requests.get_or_create(&labels).clone()));
        if *first == status {
            counter.inc();
        } else {
            self.requests.get_or_create(&labels).inc();
        }
        series.duration.observe(elapsed.as_secs_f64());
    }

    /// One HTTP request answered by `version` of `function` (empty: by no function).
    pub fn request(
        &self,
        function: &'static str,
        version: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                function,
                version,
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&VersionLabels { function, version })
            .observe(elapsed.as_secs_f64());
    }

    /// One instantiation of `function`, into `kept` (found in its family the first time).
    pub fn instantiated(&self, kept: &Instantiations, function: &'static str, elapsed: Duration) {
        kept.0
            .get_or_init(|| {
                self.instantiate_duration
                    .get_or_create(&FunctionLabels { function })
                    .clone()
            })
            .observe(elapsed.as_secs_f64());
    }

    /// An instance of `function` that reuses instances was retired after serving `served`
    /// requests.
    pub fn instance_retired(&self, function: &'static str, served: u32) {
        self.instance_requests
            .get_or_create(&FunctionLabels { function })
            .observe(f64::from(served));
    }

    /// One event delivered to `version` of `function`.
    pub fn event(
        &self,
        function: &'static str,
        version: &'static str,
        event_type: &str,
        result: &'static str,
    ) {
        let r#type = {
            let mut seen = self.event_types.lock().unwrap();
            if seen.contains(event_type) {
                event_type.to_string()
            } else if seen.len() < MAX_EVENT_TYPES {
                seen.insert(event_type.to_string());
                event_type.to_string()
            } else {
                "(other)".to_string()
            }
        };
        self.events
            .get_or_create(&EventLabels {
                function,
                version,
                r#type,
                result,
            })
            .inc();
    }

    /// How long after its `time` `function` started on an event; a clock behind the
    /// sender's counts as no lag.
    pub fn event_lag(&self, function: &'static str, lag: chrono::TimeDelta) {
        let seconds = lag.to_std().map_or(0.0, |d| d.as_secs_f64());
        self.event_lag
            .get_or_create(&FunctionLabels { function })
            .observe(seconds);
    }

    /// One emitted event, accepted or not.
    pub fn emitted(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.emitted.get_or_create(&ResultLabels { result }).inc();
    }

    /// One component load: `hit`, `miss` or `rebuilt`.
    pub fn cache(&self, result: &'static str) {
        self.cache.get_or_create(&ResultLabels { result }).inc();
    }

    /// An instance came to life; the guard counts it down when dropped.
    pub fn instance(&self) -> GaugeGuard {
        self.instances.inc();
        GaugeGuard(self.instances.clone())
    }

    /// A request was admitted; it counts as in flight until the guard is dropped.
    pub fn request_admitted(&self) -> GaugeGuard {
        self.in_flight.inc();
        GaugeGuard(self.in_flight.clone())
    }

    /// A connection opened; it counts as open until the guard is dropped.
    pub fn connection(&self) -> GaugeGuard {
        self.connections.inc();
        GaugeGuard(self.connections.clone())
    }

    /// Something refused for `reason`.
    pub fn refused(&self, reason: Refusal) {
        self.refused
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// The pool's capacity.
    pub fn set_pool_capacity(&self, instances: u32) {
        self.pool_capacity.set(i64::from(instances));
    }

    /// A second pool (the WASI 0.3 engine's) of `instances` more.
    pub fn add_pool_capacity(&self, instances: u32) {
        self.pool_capacity.inc_by(i64::from(instances));
    }

    /// Start-up finished: every function loaded, the listener bound.
    pub fn ready(&self) {
        self.start_to_ready
            .set(self.started.elapsed().as_secs_f64());
    }

    /// A response head went out; the first one fixes the cold-start figure.
    pub fn responded(&self) {
        if !self.first_request_seen.load(Ordering::Relaxed)
            && !self.first_request_seen.swap(true, Ordering::Relaxed)
        {
            self.start_to_first_request
                .set(self.started.elapsed().as_secs_f64());
        }
    }
}

/// The series one version of a function records into on every request, each found in its
/// family once and then kept: a family is a map behind a lock, and finding a series in it
/// hashes its labels, ~350 instructions a lookup (benches/README.md).
pub struct Series {
    function: &'static str,
    version: &'static str,
    duration: Histogram,
    /// By status class (1xx to 5xx): the first status of the class this version answered,
    /// and its counter. Another status of a class already taken is looked up each time.
    statuses: [OnceLock<(u16, Counter)>; 5],
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("function", &self.function)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A function's instantiation times, found in their family once (see [`Series`]).
#[derive(Debug, Default)]
pub struct Instantiations(OnceLock<Histogram>);

/// Holds a gauge one higher (a live instance, an open connection) until dropped.
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Function names as `&'static str` label values, one allocation per distinct name for the
/// life of the process (the set of functions is fixed by the manifest).
pub fn intern(name: &str) -> &'static str {
    // A set, not a list: every function of a manifest is interned at start, and a scan
    // per name made ten thousand functions cost seconds.
    static NAMES: OnceLock<Mutex<std::collections::HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap();
    if let Some(n) = names.get(name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_labels_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_EVENT_TYPES + 50 {
            m.event("f", "", &format!("type.{i}"), "accepted");
        }
        let text = m.encode();
        let series = text
            .lines()
            .filter(|l| l.starts_with("wasmfn_events_total"))
            .count();
        assert_eq!(
            series,
            MAX_EVENT_TYPES + 1,
            "one series per type up to the cap, then (other)"
        );
        assert!(text.contains(r#"type="(other)""#));
    }

    /// A kept series counts every status, the first of its class through its kept counter
    /// and the others by lookup, into the same exposition as looking each one up.
    #[test]
    fn a_kept_series_counts_what_lookups_count() {
        let answers = [200, 200, 404, 201, 200, 503, 404, 500, 101, 200];
        let kept = Metrics::new();
        let series = kept.series("f", "v1");
        let looked_up = Metrics::new();
        for status in answers {
            kept.answered(&series, status, Duration::from_millis(3));
            looked_up.request("f", "v1", status, Duration::from_millis(3));
        }
        // Series come out in the family's map order: compare them as sets.
        let lines = |m: &Metrics| -> std::collections::BTreeSet<String> {
            m.encode()
                .lines()
                .filter(|l| l.starts_with("wasmfn_request"))
                .map(String::from)
                .collect()
        };
        assert_eq!(lines(&kept), lines(&looked_up));
        let text = kept.encode();
        for (status, n) in [(200, 4), (201, 1), (404, 2), (500, 1), (503, 1), (101, 1)] {
            let line = format!(
                "wasmfn_requests_total{{function=\"f\",version=\"v1\",status=\"{status}\"}} {n}"
            );
            assert!(text.contains(&line), "{line} in\n{text}");
        }
        assert!(
            text.contains(
                "wasmfn_request_duration_seconds_count{function=\"f\",version=\"v1\"} 10"
            )
        );
    }
}
