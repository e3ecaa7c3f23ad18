//! `wasmfn deploy render`: the Knative objects for a manifest. One Knative Service per
//! `[[services]]` entry (every function in one Service by default), each running the host
//! image with the functions it serves selected by `WASMFN_FUNCTIONS`; a Trigger per event
//! subscription; a SinkBinding per Service so emitted events reach the Broker; optionally the
//! Broker itself; and around each Service the core Kubernetes objects of `cluster.rs`.

mod cluster;

pub use cluster::{Replay, replay_job};

use std::path::Path;

use serde_json::{Value, json};

use crate::manifest::delivery::{BackoffPolicy, DeadLetter, Delivery, iso8601};
use crate::manifest::deploy::{DeploySpec, Probe, ServiceSpec, Traffic};
use crate::manifest::flows::{Flow, FlowKind};
use crate::manifest::schedule::Schedule;
use crate::manifest::subscription::{Filter, Subscription};
use crate::manifest::variables::TemplatePart;
use crate::manifest::{DELIVERY_PREFIX, Manifest, RESERVED_PREFIX};
use crate::manifest::{FunctionSpec, KeyValueKind, KeyValueSpec, Location, Variable};

/// Where a Service that keeps embedded stores mounts its writable data volume (the root
/// filesystem is read-only).
pub const DATA_DIR: &str = "/var/lib/wasmfn";

/// A manifest that works on this machine but would not as Knative runs it.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {message}")]
pub struct DeployError {
    /// The Service's place in the manifest.
    pub at: Location,
    /// What is wrong and what to do.
    pub message: String,
}
/// Where the image keeps the manifest (see deploy/Containerfile).
pub const IMAGE_MANIFEST: &str = "/app/wasmfn.toml";
/// Where the image holds a Spin app's runtime configuration file, when it was rendered with
/// one.
pub const IMAGE_RUNTIME_CONFIG: &str = "/app/runtime-config.toml";

/// Environment variables the host reads (by prefix or name); a function reads only those its
/// variables or Redis URLs name.
const HOST_ENV: [&str; 4] = ["WASMFN_", "OTEL_", "RUST_LOG", "LOG_LEVEL"];

/// What renders but is likely a mistake: an environment variable a Service sets that
/// neither the host nor any of its functions reads; a grant its NetworkPolicy cannot say.
pub fn warnings(manifest: &Manifest) -> Vec<String> {
    let mut out = cluster::network_warnings(manifest);
    for service in &manifest.deploy.services {
        let read_by_functions = |env: &str| {
            service.functions.iter().any(|&i| {
                let f = &manifest.functions[i];
                f.variables.values().any(|v| v.env_name() == Some(env))
                    || f.key_value_stores.iter().any(|label| {
                        manifest.key_value.iter().any(|s| {
                            &s.label == label
                                && matches!(&s.kind, KeyValueKind::Redis { url, .. } if url.env_name() == Some(env))
                        })
                    })
            })
        };
        let names = service
            .env
            .keys()
            .chain(service.secrets.iter().map(|s| &s.env));
        for env in names {
            let host = HOST_ENV.iter().any(|h| {
                if h.ends_with('_') {
                    env.starts_with(h)
                } else {
                    env == h
                }
            });
            if !host && !read_by_functions(env) {
                out.push(format!(
                    "{}: service `{}` sets {env}, which nothing reads: the host reads WASMFN_*, OTEL_*, RUST_LOG and LOG_LEVEL, and a function only what its variables name ({{ env = \"{env}\" }})",
                    service.at, service.name
                ));
            }
        }
    }
    out
}

/// The Knative objects for `manifest`, running `image`, in apply order; or what in the
/// manifest would break on Knative.
pub fn objects(manifest: &Manifest, image: &str) -> Result<Vec<Value>, DeployError> {
    let deploy = &manifest.deploy;
    let mut out = Vec::new();
    if deploy.create_broker {
        out.push(broker(manifest));
    }
    for service in &deploy.services {
        let data_volume = check_capabilities(service, &manifest.functions, &manifest.key_value)
            .map_err(|message| DeployError {
                at: service.at.clone(),
                message,
            })?;
        if service.service_account.is_none() {
            out.push(cluster::service_account(deploy, &service.name));
        }
        out.push(knative_service(manifest, service, image, data_volume));
        if service.network_policy {
            out.push(cluster::network_policy(manifest, service));
        }
        out.extend(cluster::scaling(deploy, service));
    }
    for service in &deploy.services {
        out.extend(
            service
                .domains
                .iter()
                .map(|d| domain_mapping(deploy, service, d)),
        );
    }
    for service in &deploy.services {
        out.extend(function_triggers(manifest, service));
    }
    for flow in &manifest.flows {
        out.extend(flow_objects(manifest, flow));
    }
    for service in &deploy.services {
        for &i in &service.functions {
            for schedule in &manifest.functions[i].schedules {
                out.push(ping_source(manifest, service, i, schedule)?);
            }
        }
    }
    for service in &deploy.services {
        out.push(sink_binding(deploy, service));
    }
    Ok(out)
}

fn broker(manifest: &Manifest) -> Value {
    let deploy = &manifest.deploy;
    let mut broker = json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": metadata(deploy, &deploy.broker),
    });
    if let Some(d) = &deploy.delivery {
        broker["spec"] = json!({ "delivery": delivery(d, manifest) });
    }
    broker
}

/// A custom domain (serving.knative.dev/v1beta1, the version Knative serves them at).
fn domain_mapping(deploy: &DeploySpec, service: &ServiceSpec, domain: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1beta1",
        "kind": "DomainMapping",
        "metadata": metadata(deploy, domain),
        "spec": { "ref": { "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": service.name } },
    })
}

/// One Trigger per function, whose filters admit what any of its subscriptions admits,
/// delivering to that function's own path: the Broker delivers an event once per matching
/// Trigger, so each subscribed function runs once.
fn function_triggers(manifest: &Manifest, service: &ServiceSpec) -> Vec<Value> {
    service
        .functions
        .iter()
        .map(|&i| &manifest.functions[i])
        .filter(|function| !function.events.is_empty())
        .map(|function| {
            let subscriber = destination(
                &service.name,
                &format!("{DELIVERY_PREFIX}{}", function.name),
            );
            let delivery = function.delivery.as_ref().map(|d| delivery(d, manifest));
            trigger(
                &manifest.deploy,
                &function.name,
                &function.events,
                subscriber,
                delivery,
            )
        })
        .collect()
}

/// A Sequence or Parallel, whose steps are the functions' own paths and whose replies go
/// to the Broker, and a Trigger for the events that start it.
fn flow_objects(manifest: &Manifest, flow: &Flow) -> Vec<Value> {
    let deploy = &manifest.deploy;
    let step = |i: usize| {
        let name = &manifest.functions[i].name;
        destination(
            service_of(manifest, name),
            &format!("{DELIVERY_PREFIX}{name}"),
        )
    };
    let (kind, mut spec) = match &flow.kind {
        FlowKind::Sequence(steps) => (
            "Sequence",
            json!({ "steps": steps.iter().map(|&i| step(i)).collect::<Vec<_>>() }),
        ),
        FlowKind::Parallel(branches) => {
            let branches: Vec<Value> = branches
                .iter()
                .map(|b| {
                    let mut branch = json!({ "subscriber": step(b.subscriber) });
                    if let Some(filter) = b.filter {
                        branch["filter"] = step(filter);
                    }
                    branch
                })
                .collect();
            ("Parallel", json!({ "branches": branches }))
        }
    };
    if flow.reply {
        spec["reply"] = json!({
            "ref": { "apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": deploy.broker },
        });
    }
    let mut out = vec![json!({
        "apiVersion": "flows.knative.dev/v1",
        "kind": kind,
        "metadata": metadata(deploy, &flow.name),
        "spec": spec,
    })];
    if !flow.events.is_empty() {
        let subscriber = json!({
            "ref": { "apiVersion": "flows.knative.dev/v1", "kind": kind, "name": flow.name },
        });
        out.push(trigger(deploy, &flow.name, &flow.events, subscriber, None));
    }
    out
}

/// A PingSource for one of function `i`'s schedules, delivering to its own path.
fn ping_source(
    manifest: &Manifest,
    service: &ServiceSpec,
    i: usize,
    schedule: &Schedule,
) -> Result<Value, DeployError> {
    let function = &manifest.functions[i];
    if schedule.seconds {
        return Err(DeployError {
            at: function.component_at.clone(),
            message: format!(
                "function `{}`'s schedule `{}` ({:?}) has a seconds field, which only `wasmfn serve` fires; Knative's PingSource takes 5 fields (minute hour day month weekday)",
                function.name, schedule.name, schedule.cron
            ),
        });
    }
    let mut spec = json!({
        "schedule": schedule.cron,
        "ceOverrides": { "extensions": { "schedule": schedule.name } },
        "sink": destination(&service.name, &format!("{DELIVERY_PREFIX}{}", function.name)),
    });
    if let Some(tz) = &schedule.timezone {
        spec["timezone"] = json!(tz);
    }
    if let Some((data, content_type)) = &schedule.data {
        spec["data"] = json!(data);
        spec["contentType"] = json!(content_type);
    }
    Ok(json!({
        "apiVersion": "sources.knative.dev/v1",
        "kind": "PingSource",
        "metadata": metadata(&manifest.deploy, &format!("{}-{}", function.name, schedule.name)),
        "spec": spec,
    }))
}

/// Points the Service's `K_SINK` at the Broker, where emitted events go.
fn sink_binding(deploy: &DeploySpec, service: &ServiceSpec) -> Value {
    json!({
        "apiVersion": "sources.knative.dev/v1",
        "kind": "SinkBinding",
        "metadata": metadata(deploy, &format!("{}-sink", service.name)),
        "spec": {
            "subject": {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "name": service.name,
            },
            "sink": {
                "ref": {
                    "apiVersion": "eventing.knative.dev/v1",
                    "kind": "Broker",
                    "name": deploy.broker,
                }
            }
        }
    })
}

/// [`objects`] as a YAML stream.
pub fn render(manifest: &Manifest, image: &str) -> Result<String, DeployError> {
    let mut yaml = format!(
        "# Rendered by `wasmfn deploy render` from {}{}; edit the manifest, not this file.\n",
        manifest
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        manifest
            .profile
            .as_ref()
            .map(|p| format!(" with --profile {p}"))
            .unwrap_or_default()
    );
    for object in objects(manifest, image)? {
        yaml.push_str(&to_yaml_document(object));
    }
    Ok(yaml)
}

/// One object as a YAML document of a stream.
pub fn to_yaml_document(object: Value) -> String {
    format!(
        "---\n{}",
        serde_norway::to_string(&to_yaml(object)).expect("values serialize to YAML")
    )
}

/// serde_json's `arbitrary_precision` (on for event data) makes its numbers serialize as a
/// private struct through any other serializer, so convert to YAML values explicitly.
fn to_yaml(value: Value) -> serde_norway::Value {
    use serde_norway::Value as Y;
    match value {
        Value::Null => Y::Null,
        Value::Bool(b) => Y::Bool(b),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Y::Number(u.into()),
            (_, Some(i), _) => Y::Number(i.into()),
            (_, _, Some(f)) => Y::Number(f.into()),
            _ => Y::String(n.to_string()),
        },
        Value::String(s) => Y::String(s),
        Value::Array(items) => Y::Sequence(items.into_iter().map(to_yaml).collect()),
        Value::Object(map) => Y::Mapping(
            map.into_iter()
                .map(|(k, v)| (Y::String(k), to_yaml(v)))
                .collect(),
        ),
    }
}

/// What Knative must give a Service for its functions' capabilities to work as they do
/// locally: state that is not split between pods, and every value a function reads from
/// the environment or a file.
/// Returns whether the Service needs a data volume for embedded stores and databases.
fn check_capabilities(
    service: &ServiceSpec,
    functions: &[FunctionSpec],
    stores: &[KeyValueSpec],
) -> Result<bool, String> {
    let name = service.name.clone();
    let one_pod = service.autoscaling.get("max-scale").map(String::as_str) == Some("1");
    let has_env =
        |env: &str| service.env.contains_key(env) || service.secrets.iter().any(|s| s.env == env);
    let from_secret = |env: &str| service.secrets.iter().any(|s| s.env == env);
    let mounted = |path: &Path| {
        service
            .secret_files
            .iter()
            .any(|m| path.starts_with(&m.path))
    };
    let add_secret = |env: &str| {
        format!(
            "add `secrets = [{{ env = \"{env}\", secret = \"...\", key = \"...\" }}]` to service `{name}`"
        )
    };
    let mut data_volume = false;
    for &i in &service.functions {
        let f = &functions[i];
        for label in &f.key_value_stores {
            let Some(store) = stores.iter().find(|s| &s.label == label) else {
                continue;
            };
            match &store.kind {
                // A memory store is the process's by definition (a cache, scratch state):
                // one per pod is what it promises.
                KeyValueKind::Embedded { .. } if !one_pod => {
                    return Err(format!(
                        "service `{name}` may run more than one pod, but function `{}` keeps its store `{label}` in the pod, where each pod would see different data; use a redis store ([key_value.{label}] type = \"redis\") or set max_scale = 1 on the service",
                        f.name
                    ));
                }
                KeyValueKind::Embedded { .. } => data_volume = true,
                KeyValueKind::Memory => {}
                KeyValueKind::Redis { url, .. } => {
                    if let Some(env) = url.env_name().filter(|e| !from_secret(e)) {
                        return Err(format!(
                            "store `{label}` takes its Redis URL from the environment variable {env}, which service `{name}` must set from a Secret (the URL may hold a password): {}",
                            add_secret(env)
                        ));
                    }
                }
            }
        }
        if let Some(label) = f.sqlite_databases.first() {
            if !one_pod {
                return Err(format!(
                    "service `{name}` may run more than one pod, but function `{}` keeps its SQLite database `{label}` in the pod, where each pod would see different data; keep state shared between pods in a server (Redis through `allowed_outbound_hosts`) or set max_scale = 1 on the service",
                    f.name
                ));
            }
            data_volume = true;
        }
        for (variable, value) in &f.variables {
            match value {
                Variable::Env {
                    name: env,
                    default: None,
                } if !has_env(env) => {
                    return Err(format!(
                        "function `{}`'s variable `{variable}` reads the environment variable {env}, which service `{name}` does not set: {} (or give the variable a default)",
                        f.name,
                        add_secret(env)
                    ));
                }
                Variable::File {
                    path,
                    default: None,
                } if !mounted(path) => {
                    return Err(format!(
                        "function `{}`'s variable `{variable}` reads {}, which no Secret of service `{name}` is mounted at: add `secret_files = [{{ secret = \"...\", path = \"...\" }}]` for its directory (or give the variable a default)",
                        f.name,
                        path.display()
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(data_volume)
}

/// The address of the Broker's ingress (Knative Eventing's multi-tenant broker).
fn broker_ingress(deploy: &DeploySpec) -> String {
    format!(
        "http://broker-ingress.knative-eventing.svc.cluster.local/{}/{}",
        deploy.namespace.as_deref().unwrap_or("default"),
        deploy.broker
    )
}

fn metadata(deploy: &DeploySpec, name: &str) -> Value {
    let mut m = json!({
        "name": name,
        "labels": { "app.kubernetes.io/managed-by": "wasmfn" },
    });
    if let Some(ns) = &deploy.namespace {
        m["namespace"] = json!(ns);
    }
    m
}

/// A Trigger admitting what any of `events` admits, for `subscriber`.
fn trigger(
    deploy: &DeploySpec,
    name: &str,
    events: &[Subscription],
    subscriber: Value,
    delivery: Option<Value>,
) -> Value {
    let mut spec = serde_json::Map::new();
    spec.insert("broker".into(), json!(deploy.broker));
    match trigger_filters(events) {
        TriggerFilter::Everything => {}
        TriggerFilter::Attributes(attributes) => {
            spec.insert("filter".into(), json!({ "attributes": attributes }));
        }
        TriggerFilter::Filters(filters) => {
            spec.insert("filters".into(), Value::Array(filters));
        }
    }
    spec.insert("subscriber".into(), subscriber);
    if let Some(delivery) = delivery {
        spec.insert("delivery".into(), delivery);
    }
    json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": metadata(deploy, name),
        "spec": spec,
    })
}

/// What a function's Trigger filters by.
enum TriggerFilter {
    /// Every event (a subscription without filters).
    Everything,
    /// One shorthand subscription: Knative's `filter.attributes`, exact matches.
    Attributes(serde_json::Map<String, Value>),
    /// Knative's `filters`, all of which must match.
    Filters(Vec<Value>),
}

/// One Trigger's filters for a function's subscriptions: a subscription's own when it has
/// one, else `any` of each subscription's filters taken together.
fn trigger_filters(subscriptions: &[Subscription]) -> TriggerFilter {
    if subscriptions.iter().any(|s| s.filters.is_empty()) {
        return TriggerFilter::Everything;
    }
    if let [only] = subscriptions {
        if only.shorthand {
            let attributes = only
                .filters
                .iter()
                .filter_map(|f| match f {
                    Filter::Exact(k, v) => Some((k.clone(), json!(v))),
                    _ => None,
                })
                .collect();
            return TriggerFilter::Attributes(attributes);
        }
        return TriggerFilter::Filters(only.filters.iter().map(filter).collect());
    }
    let alternatives = subscriptions
        .iter()
        .map(|s| match &s.filters[..] {
            [one] => filter(one),
            all => json!({ "all": all.iter().map(filter).collect::<Vec<_>>() }),
        })
        .collect::<Vec<_>>();
    TriggerFilter::Filters(vec![json!({ "any": alternatives })])
}

/// Knative's `delivery` spec.
fn delivery(d: &Delivery, manifest: &Manifest) -> Value {
    let mut v = serde_json::Map::new();
    if let Some(retry) = d.retry {
        v.insert("retry".into(), json!(retry));
    }
    if let Some(policy) = d.backoff_policy {
        let policy = match policy {
            BackoffPolicy::Linear => "linear",
            BackoffPolicy::Exponential => "exponential",
        };
        v.insert("backoffPolicy".into(), json!(policy));
    }
    if let Some(delay) = d.backoff_delay {
        v.insert("backoffDelay".into(), json!(iso8601(delay)));
    }
    if let Some(timeout) = d.timeout {
        v.insert("timeout".into(), json!(iso8601(timeout)));
    }
    if let Some(dead_letter) = &d.dead_letter {
        let sink = match dead_letter {
            DeadLetter::Service(name) => json!({
                "ref": { "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name },
            }),
            DeadLetter::Function(name) => destination(
                service_of(manifest, name),
                &format!("{DELIVERY_PREFIX}{name}"),
            ),
            DeadLetter::Uri(uri) => json!({ "uri": uri }),
        };
        v.insert("deadLetterSink".into(), sink);
    }
    Value::Object(v)
}

/// The name of the Service that serves function `name`.
fn service_of<'a>(manifest: &'a Manifest, name: &str) -> &'a str {
    manifest
        .deploy
        .services
        .iter()
        .find(|s| {
            s.functions
                .iter()
                .any(|&i| manifest.functions[i].name == name)
        })
        .map_or("", |s| s.name.as_str())
}

/// A destination on a Service of this manifest: the Service, and a path on it.
fn destination(service: &str, path: &str) -> Value {
    json!({
        "ref": {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": service,
        },
        "uri": path,
    })
}

fn filter(f: &Filter) -> Value {
    match f {
        Filter::Exact(k, v) => json!({ "exact": { k: v } }),
        Filter::Prefix(k, v) => json!({ "prefix": { k: v } }),
        Filter::Suffix(k, v) => json!({ "suffix": { k: v } }),
        Filter::All(all) => json!({ "all": all.iter().map(filter).collect::<Vec<_>>() }),
        Filter::Any(any) => json!({ "any": any.iter().map(filter).collect::<Vec<_>>() }),
        Filter::Not(not) => json!({ "not": filter(not) }),
    }
}

fn knative_service(
    manifest: &Manifest,
    service: &ServiceSpec,
    image: &str,
    data_volume: bool,
) -> Value {
    // Knative's request timeout covers the slowest function (unless the service sets a
    // longer one), rounded up to whole seconds.
    let timeout = service.timeout.unwrap_or_else(|| {
        service
            .functions
            .iter()
            .map(|&i| manifest.functions[i].timeout)
            .max()
            .unwrap_or_default()
    });
    let timeout_seconds = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    let (container_concurrency, target) = capacity(manifest, service);
    let (container, volumes) = container(manifest, service, image, data_volume);
    let mut template_metadata = json!({
        "annotations": template_annotations(manifest.deploy.port, service, target),
    });
    let revisions = version_revisions(manifest, service);
    if let Some((revision, _)) = &revisions {
        template_metadata["name"] = json!(revision);
    } else if let Some(revision) = &service.revision {
        template_metadata["name"] = json!(revision);
    }
    if !service.template_labels.is_empty() {
        template_metadata["labels"] = json!(service.template_labels);
    }
    let mut template_spec = json!({
        "timeoutSeconds": timeout_seconds,
        "containerConcurrency": container_concurrency,
        "containers": [container],
    });
    template_spec["serviceAccountName"] =
        json!(service.service_account.as_deref().unwrap_or(&service.name));
    if !volumes.is_empty() {
        template_spec["volumes"] = json!(volumes);
    }
    let mut spec = json!({
        "template": { "metadata": template_metadata, "spec": template_spec },
    });
    if let Some((_, traffic)) = revisions {
        spec["traffic"] = json!(traffic.iter().map(traffic_entry).collect::<Vec<_>>());
    } else if !service.traffic.is_empty() {
        spec["traffic"] = json!(
            service
                .traffic
                .iter()
                .map(traffic_entry)
                .collect::<Vec<_>>()
        );
    }
    let mut meta = metadata(&manifest.deploy, &service.name);
    for (k, v) in &service.labels {
        meta["labels"][k] = json!(v);
    }
    if !service.annotations.is_empty() {
        meta["annotations"] = json!(service.annotations);
    }
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": meta,
        "spec": spec,
    })
}

/// The host's container, locked down, and the pod volumes it mounts.
fn container(
    manifest: &Manifest,
    service: &ServiceSpec,
    image: &str,
    data_volume: bool,
) -> (Value, Vec<Value>) {
    let port = manifest.deploy.port;
    let mut env = container_env(manifest, service);
    // Embedded stores need a writable directory; the root filesystem is read-only. Its
    // data lives as long as the pod (max_scale = 1 was checked with the manifest).
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if data_volume {
        env.push(json!({ "name": "WASMFN_DATA_DIR", "value": DATA_DIR }));
        volumes.push(json!({ "name": "wasmfn-data", "emptyDir": {} }));
        mounts.push(json!({ "name": "wasmfn-data", "mountPath": DATA_DIR }));
    }
    // A function's `files` are gathered into a temporary directory when it loads: under
    // the read-only root that needs a writable /tmp of the pod's own.
    if service
        .functions
        .iter()
        .any(|&i| !manifest.functions[i].files.is_empty())
    {
        volumes.push(json!({ "name": "wasmfn-tmp", "emptyDir": {} }));
        mounts.push(json!({ "name": "wasmfn-tmp", "mountPath": "/tmp" }));
    }
    for (i, files) in service.secret_files.iter().enumerate() {
        // An injector writes its files itself (Vault's agent mounts its own volume).
        let Some(secret) = &files.secret else {
            continue;
        };
        let name = format!("secret-files-{i}");
        volumes.push(json!({ "name": name, "secret": { "secretName": secret } }));
        mounts.push(json!({ "name": name, "mountPath": files.path, "readOnly": true }));
    }
    let mut container = json!({
        "name": "wasmfn",
        "image": image,
        "ports": [{ "name": "h2c", "containerPort": port }],
        "env": env,
        "readinessProbe": probe(port, "ready", &service.readiness),
        "livenessProbe": probe(port, "live", &service.liveness),
        "securityContext": cluster::locked_down(),
    });
    if !mounts.is_empty() {
        container["volumeMounts"] = json!(mounts);
    }
    let resources = &service.resources;
    if !resources.requests.is_empty() || !resources.limits.is_empty() {
        let mut r = serde_json::Map::new();
        if !resources.requests.is_empty() {
            r.insert("requests".into(), json!(resources.requests));
        }
        if !resources.limits.is_empty() {
            r.insert("limits".into(), json!(resources.limits));
        }
        container["resources"] = Value::Object(r);
    }
    (container, volumes)
}

/// Which manifest and functions the host serves, and the service's own variables.
fn container_env(manifest: &Manifest, service: &ServiceSpec) -> Vec<Value> {
    let mut env = vec![json!({ "name": "WASMFN_MANIFEST", "value": IMAGE_MANIFEST })];
    if manifest.runtime_config.is_some() {
        env.push(json!({ "name": "WASMFN_RUNTIME_CONFIG_FILE", "value": IMAGE_RUNTIME_CONFIG }));
    }
    if service.functions.len() != manifest.functions.len() {
        let names: Vec<&str> = service
            .functions
            .iter()
            .map(|&i| manifest.functions[i].name.as_str())
            .collect();
        env.push(json!({ "name": "WASMFN_FUNCTIONS", "value": names.join(",") }));
    }
    if let Some((function, version)) = pinned_version(manifest, service) {
        env.push(
            json!({ "name": "WASMFN_PIN_VERSIONS", "value": format!("{function}={version}") }),
        );
    }
    for (k, v) in &service.env {
        env.push(json!({ "name": k, "value": v }));
    }
    for s in &service.secrets {
        env.push(json!({
            "name": s.env,
            "valueFrom": { "secretKeyRef": { "name": s.secret, "key": s.key } },
        }));
    }
    // A Spin app's variables with no default (`required = true`) are read from
    // SPIN_VARIABLE_<NAME>: on Knative each comes from the Secret `<service>-variables`, key
    // `<name>`, which whoever deploys creates; nothing renders a value no one sets.
    let set: std::collections::BTreeSet<String> = env
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect();
    let required: std::collections::BTreeSet<&str> = service
        .functions
        .iter()
        .flat_map(|&i| manifest.functions[i].variables.values())
        .filter_map(|v| match v {
            Variable::Template(parts) => Some(parts),
            _ => None,
        })
        .flatten()
        .filter_map(|part| match part {
            // Required, and not written in the runtime configuration file.
            TemplatePart::Variable {
                name,
                providers,
                env,
                default: None,
            } if !providers.iter().any(|p| p.has_static(name)) => Some(env.as_str()),
            _ => None,
        })
        .filter(|env| !set.contains(*env))
        .collect();
    for name in required {
        let key = name
            .strip_prefix("SPIN_VARIABLE_")
            .unwrap_or(name)
            .to_ascii_lowercase();
        env.push(json!({
            "name": name,
            "valueFrom": { "secretKeyRef": { "name": format!("{}-variables", service.name), "key": key } },
        }));
    }
    env
}

/// A probe of the host's own `path` under [`RESERVED_PREFIX`].
fn probe(port: u16, path: &str, timing: &Probe) -> Value {
    let mut probe = json!({
        "httpGet": { "path": format!("{RESERVED_PREFIX}{path}"), "port": port },
        "periodSeconds": timing.period_seconds.unwrap_or(1),
    });
    for (key, value) in [
        ("initialDelaySeconds", timing.initial_delay_seconds),
        ("timeoutSeconds", timing.timeout_seconds),
        ("failureThreshold", timing.failure_threshold),
    ] {
        if let Some(v) = value {
            probe[key] = json!(v);
        }
    }
    probe
}

/// The revision template's annotations: the service's own, autoscaling (with the derived
/// `target`, if any) and Prometheus' scrape settings.
fn template_annotations(
    port: u16,
    service: &ServiceSpec,
    target: Option<u32>,
) -> serde_json::Map<String, Value> {
    let mut annotations: serde_json::Map<String, Value> = service
        .template_annotations
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .chain(
            service
                .autoscaling
                .iter()
                .map(|(k, v)| (format!("autoscaling.knative.dev/{k}"), json!(v))),
        )
        .collect();
    if let Some(target) = target {
        annotations.insert(
            "autoscaling.knative.dev/target".into(),
            json!(target.to_string()),
        );
    }
    // Prometheus' pod discovery reads these; the metrics share the serving port because
    // Knative allows one user port and reserves 9090/9091.
    annotations.insert("prometheus.io/scrape".into(), json!("true"));
    annotations.insert("prometheus.io/port".into(), json!(port.to_string()));
    annotations.insert(
        "prometheus.io/path".into(),
        json!(format!("{RESERVED_PREFIX}metrics")),
    );
    annotations
}

/// With `versions_as_revisions`, the function and the version this template serves: the
/// one `current_version` names, else the first listed (the newest).
fn pinned_version<'a>(
    manifest: &'a Manifest,
    service: &'a ServiceSpec,
) -> Option<(&'a str, &'a str)> {
    let f = &manifest.functions[service.versions_as_revisions?];
    let versions = &f.versions.as_ref()?.list;
    let current = service
        .current_version
        .as_deref()
        .unwrap_or(versions.first()?.name.as_str());
    Some((f.name.as_str(), current))
}

/// With `versions_as_revisions`, the template's revision name and the traffic: each version
/// from the current one on (those listed after it were deployed before it) keeps its
/// weight under its own revision, tagged with its tag or name, and the current one takes
/// the weights of the versions not yet deployed too.
fn version_revisions(manifest: &Manifest, service: &ServiceSpec) -> Option<(String, Vec<Traffic>)> {
    let (function, current) = pinned_version(manifest, service)?;
    let f = manifest.functions.iter().find(|f| f.name == function)?;
    let list = &f.versions.as_ref()?.list;
    let at = list.iter().position(|v| v.name == current)?;
    let revision = |name: &str| format!("{}-{name}", service.name);
    let older: u32 = list[at + 1..].iter().map(|v| v.weight).sum();
    let traffic = list[at..]
        .iter()
        .enumerate()
        .map(|(i, v)| Traffic {
            revision: Some(revision(&v.name)),
            percent: if i == 0 { 100 - older } else { v.weight },
            tag: Some(v.tag.clone().unwrap_or_else(|| v.name.clone())),
        })
        .collect();
    Some((revision(current), traffic))
}

fn traffic_entry(t: &Traffic) -> Value {
    let mut entry = match &t.revision {
        Some(r) => json!({ "revisionName": r }),
        None => json!({ "latestRevision": true }),
    };
    entry["percent"] = json!(t.percent);
    if let Some(tag) = &t.tag {
        entry["tag"] = json!(tag);
    }
    entry
}

/// The Service's `containerConcurrency` and, where Knative's autoscaler would use its own
/// default, its concurrency target: what one pod can really run at once (the host's
/// `max_in_flight`, the instance pool, and the sum of its functions' `concurrency` when
/// every one sets it), and 70% of it, Knative's own target utilization, so pods are added
/// before requests queue. What the manifest sets wins.
fn capacity(manifest: &Manifest, service: &ServiceSpec) -> (u32, Option<u32>) {
    let pool = service
        .env
        .get("WASMFN_POOL_INSTANCES")
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::engine::DEFAULT_POOL_INSTANCES);
    let functions: Option<u64> = service
        .functions
        .iter()
        .map(|&i| manifest.functions[i].concurrency.map(u64::from))
        .sum();
    let derived = [
        u64::from(manifest.server.max_in_flight),
        u64::from(pool),
        functions.unwrap_or(u64::MAX),
        1000,
    ]
    .into_iter()
    .min()
    .unwrap_or(1000) as u32;
    let cc = service.container_concurrency.unwrap_or(derived);
    let concurrency_scaled = service
        .autoscaling
        .get("metric")
        .is_none_or(|m| m == "concurrency")
        && service
            .autoscaling
            .get("class")
            .is_none_or(|c| c.starts_with("kpa"));
    let target = (!service.autoscaling.contains_key("target") && concurrency_scaled && cc > 0)
        .then(|| (cc * 7 / 10).max(1));
    (cc, target)
}
