//! The core Kubernetes objects around each Knative Service: its NetworkPolicy, derived from
//! what its functions are granted so it never drifts from them; its ServiceAccount; the
//! CronJobs (with the one permission they need) that change its minimum scale on a
//! schedule; and the Job that replays an event store to the Broker.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};

use super::{broker_ingress, metadata, service_of};
use crate::manifest::deploy::{DeploySpec, ServiceSpec};
use crate::manifest::hosts::{AllowedHost, Hosts, INTERNAL_DOMAIN, SPIN_INTERNAL_DOMAIN};
use crate::manifest::{KeyValueKind, Manifest};

/// The ports of a Knative pod its data path reaches: queue-proxy's HTTP/1 and h2c ports, in
/// front of the host's own; the activator and the ingress connect there, not to the user
/// container's port.
const QUEUE_PROXY_PORTS: [u16; 2] = [8012, 8013];
/// queue-proxy's port the autoscaler (in knative-serving) reads request statistics from.
const AUTOSCALER_METRICS_PORT: u16 = 9090;
/// Where the Broker's ingress pods listen (behind the `broker-ingress` Service's port 80).
const BROKER_INGRESS_PORT: u16 = 8080;
/// The Broker ingress's namespace in a standard Knative Eventing install.
const EVENTING_NAMESPACE: &str = "knative-eventing";
/// The Serving control and data plane (activator, autoscaler).
const SERVING_NAMESPACE: &str = "knative-serving";

/// The namespace a name inside the cluster is in: `name.namespace`, `name.namespace.svc`,
/// `name.namespace.svc.cluster.local` (or the same under a wildcard, `*.namespace.svc...`).
/// Two labels are read as `name.namespace`, as Kubernetes' resolver does from a pod.
fn cluster_namespace(host: &str, wildcard: bool) -> Option<&str> {
    let name = host
        .strip_suffix(".svc.cluster.local")
        .or_else(|| host.strip_suffix(".svc"))
        .unwrap_or(host);
    let labels: Vec<&str> = name.split('.').collect();
    let in_cluster = name.len() != host.len();
    match (wildcard, &labels[..]) {
        // `*.database.svc.cluster.local`: any Service in `database`.
        (true, [ns]) if in_cluster => Some(ns),
        (false, [_, ns]) => Some(ns),
        _ => None,
    }
}

/// Where one grant lets a pod connect, as a NetworkPolicy peer and port.
enum Peer<'a> {
    /// Inside the pod or the host (loopback, another function of the host): no rule.
    Local,
    /// Any pod of a namespace.
    Namespace(&'a str),
    /// One address (a private one too: it was named).
    Address(IpAddr),
    /// Addresses outside the cluster; `wildcard` when the grant names no one host.
    Outside { wildcard: bool },
}

fn peer(hosts: Hosts<'_>) -> Peer<'_> {
    match hosts {
        Hosts::Exact("localhost") => Peer::Local,
        Hosts::Exact(h) | Hosts::Under(h)
            if h == INTERNAL_DOMAIN
                || h.ends_with(&format!(".{INTERNAL_DOMAIN}"))
                || h == SPIN_INTERNAL_DOMAIN
                || h.ends_with(&format!(".{SPIN_INTERNAL_DOMAIN}")) =>
        {
            Peer::Local
        }
        Hosts::Exact(h) => match h.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) if ip.is_loopback() => Peer::Local,
            Ok(ip) => Peer::Address(ip),
            Err(_) => cluster_namespace(h, false)
                .map_or(Peer::Outside { wildcard: false }, Peer::Namespace),
        },
        Hosts::Under(d) => {
            cluster_namespace(d, true).map_or(Peer::Outside { wildcard: true }, Peer::Namespace)
        }
        Hosts::Any => Peer::Outside { wildcard: true },
    }
}

fn namespace_selector(ns: &str) -> Value {
    // Kubernetes labels every namespace with its name (1.22 and later); the seed's `name:`
    // label exists only where someone added it.
    json!({ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns } } })
}

fn tcp(port: u16) -> Value {
    json!({ "protocol": "TCP", "port": port })
}

/// What the NetworkPolicy of a Service lets out, and what it cannot say of the grants.
struct Egress {
    rules: Vec<Value>,
    warnings: Vec<String>,
}

/// The egress of `service`: DNS, the Broker when a function may emit, and every grant.
fn egress(manifest: &Manifest, service: &ServiceSpec) -> Egress {
    let network = &manifest.deploy.network;
    let mut rules = vec![json!({
        "to": [{ "namespaceSelector": {}, "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } } }],
        "ports": [{ "protocol": "UDP", "port": 53 }, { "protocol": "TCP", "port": 53 }],
    })];
    let mut warnings = Vec::new();
    let mut emits = false;
    for &i in &service.functions {
        let f = &manifest.functions[i];
        for variant in f.variants() {
            // A component not built yet (or not WebAssembly, which `check` and `serve`
            // report) may emit: the Broker is allowed. A precompiled one hides its
            // imports: the same, said.
            let Ok(wasm) = std::fs::read(&variant.component) else {
                emits = true;
                continue;
            };
            match crate::engine::imports_emitter(&wasm) {
                Some(imports) => emits |= imports,
                None => {
                    emits = true;
                    if wasm.starts_with(b"\0asm") || wasm.starts_with(b"\x7fELF") {
                        warnings.push(format!(
                            "{}: {} is precompiled, so render cannot see whether function `{}` emits events; service `{}`'s NetworkPolicy lets it reach the Broker",
                            variant.component_at,
                            variant.component.display(),
                            f.name,
                            service.name
                        ));
                    }
                }
            }
        }
    }
    if emits {
        rules.push(json!({
            "to": [namespace_selector(EVENTING_NAMESPACE)],
            "ports": [tcp(BROKER_INGRESS_PORT)],
        }));
    }
    // Every destination with who is granted it, for the warnings.
    let mut grants: Vec<(String, AllowedHost)> = Vec::new();
    for &i in &service.functions {
        let f = &manifest.functions[i];
        grants.extend(
            f.allowed_outbound_hosts
                .0
                .iter()
                .map(|h| (format!("function `{}`", f.name), h.clone())),
        );
        for label in &f.key_value_stores {
            let Some(store) = manifest.key_value.iter().find(|s| &s.label == label) else {
                continue;
            };
            let KeyValueKind::Redis { url, .. } = &store.kind else {
                continue;
            };
            let literal = match url {
                crate::manifest::Variable::Literal(u) => grant(u),
                _ => None,
            };
            match literal {
                Some(host) => grants.push((format!("store `{label}`"), host)),
                None if !service
                    .egress
                    .iter()
                    .any(|e| e.to_string().starts_with("redis")) =>
                {
                    warnings.push(format!(
                        "{}: function `{}`'s store `{label}` reads its Redis address from the environment, which render cannot see; add it to service `{}`'s `egress` (e.g. \"redis://*.cache.svc.cluster.local:6379\") or its pods cannot reach Redis",
                        service.at, f.name, service.name
                    ));
                }
                None => {}
            }
        }
    }
    grants.extend(
        service
            .egress
            .iter()
            .map(|h| (format!("service `{}`'s egress", service.name), h.clone())),
    );
    if let Some(host) = otlp_endpoint(service) {
        grants.push(("the OTLP endpoint".to_string(), host));
    }
    let mut seen = BTreeSet::new();
    for (who, grant) in &grants {
        let ports = grant.port().map(|p| vec![tcp(p)]);
        let to = match peer(grant.hosts()) {
            Peer::Local => continue,
            Peer::Namespace(ns) => namespace_selector(ns),
            Peer::Address(ip) => {
                let bits = if ip.is_ipv4() { 32 } else { 128 };
                json!({ "ipBlock": { "cidr": format!("{ip}/{bits}") } })
            }
            Peer::Outside { wildcard } => {
                if wildcard {
                    warnings.push(format!(
                        "{}: {who}'s grant `{grant}` names hosts by a wildcard outside the cluster, which a NetworkPolicy cannot; service `{}`'s policy lets it reach {} on every public address",
                        service.at,
                        service.name,
                        grant.port().map_or("every port".to_string(), |p| format!("port {p}"))
                    ));
                }
                json!({ "ipBlock": { "cidr": "0.0.0.0/0", "except": network.private_ranges } })
            }
        };
        let mut rule = json!({ "to": [to] });
        if let Some(ports) = ports {
            rule["ports"] = json!(ports);
        }
        if seen.insert(rule.to_string()) {
            rules.push(rule);
        }
    }
    Egress { rules, warnings }
}

/// A URL's scheme, host and port as a grant (a port left out is the scheme's default, as
/// in `allowed_outbound_hosts`).
fn grant(url: &str) -> Option<AllowedHost> {
    let u = url::Url::parse(url).ok()?;
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    AllowedHost::parse(&format!("{}://{}{port}", u.scheme(), u.host_str()?)).ok()
}

/// The OTLP endpoint the Service's environment names, as a grant.
fn otlp_endpoint(service: &ServiceSpec) -> Option<AllowedHost> {
    let url = service
        .env
        .get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| service.env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    grant(url)
}

/// The Service's NetworkPolicy: in from Knative's data path (and Prometheus, when
/// `[deploy] monitoring_namespace` says where it runs), out to what its functions use.
pub(super) fn network_policy(manifest: &Manifest, service: &ServiceSpec) -> Value {
    let deploy = &manifest.deploy;
    let network = &deploy.network;
    let data_path: Vec<Value> = QUEUE_PROXY_PORTS.iter().map(|&p| tcp(p)).collect();
    let mut serving_ports = data_path.clone();
    serving_ports.push(tcp(AUTOSCALER_METRICS_PORT));
    let mut ingress = vec![
        json!({ "from": [namespace_selector(SERVING_NAMESPACE)], "ports": serving_ports }),
        json!({ "from": [namespace_selector(&network.ingress_namespace)], "ports": data_path }),
    ];
    if let Some(ns) = &network.monitoring_namespace {
        ingress.push(json!({ "from": [namespace_selector(ns)], "ports": [tcp(deploy.port)] }));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(deploy, &service.name),
        "spec": {
            "podSelector": { "matchLabels": { "serving.knative.dev/service": service.name } },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress(manifest, service).rules,
        },
    })
}

/// What a Service's NetworkPolicy cannot say of its grants.
pub(super) fn network_warnings(manifest: &Manifest) -> Vec<String> {
    manifest
        .deploy
        .services
        .iter()
        .filter(|s| s.network_policy)
        .flat_map(|s| egress(manifest, s).warnings)
        .collect()
}

/// The account a Service's pods run as when the manifest names none: with no token, since
/// the host never calls the Kubernetes API.
pub(super) fn service_account(deploy: &DeploySpec, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(deploy, name),
        "automountServiceAccountToken": false,
    })
}

/// The CronJobs of a Service's `scaling_schedule`, and the account they run as, allowed
/// only to patch that Service.
pub(super) fn scaling(deploy: &DeploySpec, service: &ServiceSpec) -> Vec<Value> {
    if service.scaling.is_empty() {
        return Vec::new();
    }
    let account = format!("{}-scaler", service.name);
    let mut out = vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": metadata(deploy, &account),
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(deploy, &account),
            "rules": [{
                "apiGroups": ["serving.knative.dev"],
                "resources": ["services"],
                "resourceNames": [service.name],
                "verbs": ["patch"],
            }],
        }),
    ];
    let mut subject = json!({ "kind": "ServiceAccount", "name": account });
    if let Some(ns) = &deploy.namespace {
        subject["namespace"] = json!(ns);
    }
    out.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(deploy, &account),
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account },
        "subjects": [subject],
    }));
    for s in &service.scaling {
        // Knative reads autoscaling annotations from the revision template, not from the
        // Service's own metadata (where the seed's `kubectl annotate` puts them): patch the
        // template, which rolls a revision with the new minimum. A merge patch needs no
        // `get`, so the Role allows `patch` alone.
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
            "autoscaling.knative.dev/min-scale": s.min_scale.to_string(),
        } } } } });
        let mut spec = json!({
            "schedule": s.cron,
            "concurrencyPolicy": "Forbid",
            "jobTemplate": { "spec": {
                "backoffLimit": 3,
                "template": { "spec": {
                    "serviceAccountName": account,
                    "restartPolicy": "OnFailure",
                    "containers": [{
                        "name": "scaler",
                        "image": deploy.kubectl_image,
                        "command": [
                            "kubectl", "patch", format!("services.serving.knative.dev/{}", service.name),
                            "--type=merge", "-p", patch.to_string(),
                        ],
                        // kubectl keeps its discovery cache under $HOME; the root is read-only.
                        "env": [{ "name": "HOME", "value": "/tmp" }],
                        "volumeMounts": [{ "name": "tmp", "mountPath": "/tmp" }],
                        "securityContext": locked_down(),
                    }],
                    "volumes": [{ "name": "tmp", "emptyDir": {} }],
                } },
            } },
        });
        if let Some(tz) = &s.timezone {
            spec["timeZone"] = json!(tz);
        }
        out.push(json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": metadata(deploy, &format!("{}-{}", service.name, s.name)),
            "spec": spec,
        }));
    }
    out
}

/// A container that cannot gain privileges or write its image.
pub(super) fn locked_down() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": { "drop": ["ALL"] },
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// What `wasmfn deploy replay-job` replays.
#[derive(Debug, Clone)]
pub struct Replay {
    /// The function whose service serves the event listing.
    pub function: String,
    /// The path under which it lists events (`<path>/events`).
    pub path: String,
    /// RFC 3339 start and end of the range.
    pub start: String,
    /// End of the range.
    pub end: String,
    /// Only this aggregate's events.
    pub aggregate: Option<String>,
    /// The Job's name.
    pub name: String,
}

/// A Job that runs `wasmfn replay` from the host image itself: the events the function's
/// store lists between two times, to the Broker, each marked as replayed.
pub fn replay_job(manifest: &Manifest, image: &str, replay: &Replay) -> Result<Value, String> {
    let deploy = &manifest.deploy;
    let service = service_of(manifest, &replay.function);
    if service.is_empty() {
        return Err(format!(
            "the manifest has no function `{}`",
            replay.function
        ));
    }
    let namespace = deploy.namespace.as_deref().unwrap_or("default");
    let store = format!(
        "http://{service}.{namespace}.svc.cluster.local{}",
        replay.path.trim_end_matches('/')
    );
    let mut env = vec![
        json!({ "name": "EVENT_STORE_URL", "value": store }),
        json!({ "name": "BROKER_URL", "value": broker_ingress(deploy) }),
        json!({ "name": "START_TIME", "value": replay.start }),
        json!({ "name": "END_TIME", "value": replay.end }),
    ];
    if let Some(a) = &replay.aggregate {
        env.push(json!({ "name": "AGGREGATE_ID", "value": a }));
    }
    Ok(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(deploy, &replay.name),
        "spec": {
            // A replay sends each event once per run: a failed run is looked at, not
            // repeated behind the operator's back.
            "backoffLimit": 0,
            "template": { "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "containers": [{
                    "name": "replay",
                    "image": image,
                    "command": ["/wasmfn", "replay"],
                    "env": env,
                    "securityContext": locked_down(),
                }],
            } },
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer_of(entry: &str) -> String {
        let grant = AllowedHost::parse(entry).unwrap();
        match peer(grant.hosts()) {
            Peer::Local => "local".into(),
            Peer::Namespace(ns) => format!("namespace {ns}"),
            Peer::Address(ip) => format!("address {ip}"),
            Peer::Outside { wildcard } => format!("outside wildcard={wildcard}"),
        }
    }

    #[test]
    fn grants_become_peers_inside_or_outside_the_cluster() {
        for (entry, expected) in [
            (
                "postgres://*.database.svc.cluster.local:5432",
                "namespace database",
            ),
            ("redis://redis.cache.svc.cluster.local", "namespace cache"),
            ("http://users.resimate-apis", "namespace resimate-apis"),
            ("http://users.resimate-apis.svc", "namespace resimate-apis"),
            ("redis://*.cache.svc", "namespace cache"),
            ("https://hooks.resimate.io", "outside wildcard=false"),
            ("https://*.stripe.com", "outside wildcard=true"),
            ("*://*:*", "outside wildcard=true"),
            ("http://10.1.2.3:8080", "address 10.1.2.3"),
            ("postgres://127.0.0.1:*", "local"),
            ("http://localhost:8080", "local"),
            ("http://echo.wasmfn.internal", "local"),
            ("http://*.spin.internal", "local"),
        ] {
            assert_eq!(peer_of(entry), expected, "{entry}");
        }
    }
}
