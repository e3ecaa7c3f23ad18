//! `wasmfn deploy render` against Knative's own CRD schemas (../shared/knative), plus the
//! Trigger rules the partial Eventing schemas leave out, and its core Kubernetes objects
//! (NetworkPolicy, ServiceAccount, Role, RoleBinding, CronJob, Job) against Kubernetes 1.33's
//! own schemas, strictly, with `kubernetes-validate` from PyPI; the YAML under deploy/ is
//! checked the same way and must match what the renderer prints today.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use wasmfn::manifest::Manifest;
use wasmfn_guest_artifacts as guests;

mod common;

fn repo() -> PathBuf {
    Path::new(guests::GUESTS_DIR)
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Every CRD schema beside CONTRACT.md, by `apiVersion` and `kind` (`serving.knative.dev/v1
/// Service`): every version each CRD serves.
fn schemas() -> BTreeMap<String, jsonschema::Validator> {
    let dir = repo().join("../shared/knative");
    assert!(
        dir.is_dir(),
        "Knative CRD schemas not found at {}: the repository expects ../shared beside it",
        dir.display()
    );
    let mut out = BTreeMap::new();
    for sub in ["serving", "eventing"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let crd: Value =
                serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            let group = crd["spec"]["group"].as_str().unwrap().to_string();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let schema = &version["schema"]["openAPIV3Schema"];
                let validator = jsonschema::validator_for(schema)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let name = version["name"].as_str().unwrap();
                out.insert(format!("{group}/{name} {kind}"), validator);
            }
        }
    }
    out
}

/// The core Kubernetes kinds render produces, which [`kubernetes_problems`] checks.
const CORE: [(&str, &str); 6] = [
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
];

fn is_core(object: &Value) -> bool {
    CORE.iter()
        .any(|(api, kind)| object["apiVersion"] == *api && object["kind"] == *kind)
}

/// `kubernetes-validate`: the CI's virtualenv's, or one on the PATH.
fn kubernetes_validate() -> Option<PathBuf> {
    let venv = repo().join("target/ci-venv/bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv);
    }
    let found = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| PathBuf::from("kubernetes-validate"))
}

/// What Kubernetes 1.33's own schemas, read strictly (no field they do not define), find
/// in the core objects among `objects`; `None` where `kubernetes-validate` is not installed
/// (CI installs it, and there its absence fails the test).
fn kubernetes_problems(objects: &[Value]) -> Option<Vec<String>> {
    let core: Vec<&Value> = objects.iter().filter(|o| is_core(o)).collect();
    assert!(!core.is_empty(), "no core objects to validate");
    let Some(tool) = kubernetes_validate() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubernetes-validate is not installed: `pip install kubernetes-validate` (.ci/run does)"
        );
        eprintln!(
            "skipped: kubernetes-validate is not installed (pip install kubernetes-validate)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("objects.yaml");
    // JSON is YAML, and serde_json writes its numbers as numbers (serde_norway would not:
    // `arbitrary_precision` is on for event data).
    let yaml: String = core.iter().map(|o| format!("---\n{o}\n")).collect();
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(tool)
        .args(["--strict", "--kubernetes-version", "1.33.0"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let passed = text.matches(" passed for resource ").count();
    let mut problems: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("INFO") && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if passed != core.len() {
        problems.push(format!(
            "{passed} of {} objects passed:\n{text}",
            core.len()
        ));
    }
    Some(problems)
}

/// The problems Knative would find in `object`: its CRD schema, and for Triggers the rules
/// the schema does not encode (CONTRACT.md, "Trigger filters"). Core Kubernetes objects are
/// [`kubernetes_problems`]'.
fn problems(schemas: &BTreeMap<String, jsonschema::Validator>, object: &Value) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let api = object["apiVersion"].as_str().unwrap_or_default();
    if is_core(object) {
        return Vec::new();
    }
    let Some(validator) = schemas.get(&format!("{api} {kind}")) else {
        return vec![format!("no schema for {api} {kind}")];
    };
    let mut out: Vec<String> = validator
        .iter_errors(object)
        .map(|e| format!("{kind} {}: {e}", e.instance_path()))
        .collect();
    if kind == "Trigger" {
        out.extend(trigger_problems(&object["spec"]));
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() || name.len() > 63 {
        out.push(format!("{kind}: metadata.name {name:?} is not a DNS label"));
    }
    out
}

fn trigger_problems(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if spec["broker"].as_str().is_none_or(str::is_empty) {
        out.push("Trigger: spec.broker is required".into());
    }
    let sub = &spec["subscriber"];
    if sub.get("ref").is_none() && sub.get("uri").is_none() {
        out.push("Trigger: spec.subscriber needs ref or uri".into());
    }
    if let Some(attrs) = spec["filter"]["attributes"].as_object() {
        for (k, v) in attrs {
            if !valid_attribute(k) || !v.is_string() {
                out.push(format!(
                    "Trigger: filter.attributes.{k} must be a string attribute"
                ));
            }
        }
    }
    if let Some(filters) = spec.get("filters") {
        match filters.as_array() {
            Some(list) => list.iter().for_each(|f| check_filter(f, &mut out)),
            None => out.push("Trigger: filters must be a list".into()),
        }
    }
    if let Some(delivery) = spec.get("delivery") {
        out.extend(delivery_problems(delivery));
    }
    out
}

/// Knative's rules for a `delivery` spec (eventing pkg/apis/duck/v1/delivery_types.go).
fn delivery_problems(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let iso = |v: &Value| {
        v.as_str().is_some_and(|s| {
            s.strip_prefix("PT")
                .and_then(|s| s.strip_suffix('S'))
                .is_some_and(|n| n.parse::<f64>().is_ok_and(|n| n > 0.0))
        })
    };
    for key in ["backoffDelay", "timeout"] {
        if let Some(v) = d.get(key)
            && !iso(v)
        {
            out.push(format!("delivery.{key} {v} is not an ISO 8601 duration"));
        }
    }
    if let Some(p) = d.get("backoffPolicy")
        && p != "linear"
        && p != "exponential"
    {
        out.push(format!(
            "delivery.backoffPolicy {p} is not linear or exponential"
        ));
    }
    if let Some(r) = d.get("retry")
        && r.as_u64().is_none()
    {
        out.push(format!("delivery.retry {r} is not a count"));
    }
    if let Some(sink) = d.get("deadLetterSink")
        && sink.get("ref").is_none()
        && sink.get("uri").is_none()
    {
        out.push("delivery.deadLetterSink needs ref or uri".into());
    }
    out
}

fn check_filter(f: &Value, out: &mut Vec<String>) {
    let Some(obj) = f.as_object() else {
        return out.push(format!("Trigger: filter {f} is not an object"));
    };
    let dialects = ["exact", "prefix", "suffix", "all", "any", "not", "cesql"];
    let set: Vec<&String> = obj
        .keys()
        .filter(|k| dialects.contains(&k.as_str()))
        .collect();
    if set.len() != 1 || obj.len() != 1 {
        return out.push(format!("Trigger: filter {f} must have exactly one dialect"));
    }
    let value = &obj[set[0].as_str()];
    match set[0].as_str() {
        "exact" | "prefix" | "suffix" => match value.as_object() {
            Some(m) if m.len() == 1 => {
                let (k, v) = m.iter().next().unwrap();
                if !valid_attribute(k) || !v.is_string() {
                    out.push(format!("Trigger: filter {f} has an invalid attribute"));
                }
            }
            _ => out.push(format!(
                "Trigger: filter {f} must hold exactly one attribute"
            )),
        },
        "all" | "any" => match value.as_array() {
            Some(items) if !items.is_empty() => items.iter().for_each(|i| check_filter(i, out)),
            _ => out.push(format!("Trigger: filter {f} needs a non-empty list")),
        },
        "not" => check_filter(value, out),
        _ => {}
    }
}

fn valid_attribute(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn render(manifest: &Path, image: &str) -> String {
    render_with(manifest, &["--image", image])
}

fn render_with(manifest: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(["deploy", "render"])
        .args(args)
        .arg("--manifest")
        .arg(manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `wasmfn ARGS --manifest MANIFEST`, as it exits.
fn wasmfn(args: &[&str], manifest: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wasmfn"))
        .args(args)
        .arg("--manifest")
        .arg(manifest)
        .output()
        .unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .filter_map(|doc| serde_norway::from_str::<Option<Value>>(doc).unwrap())
        .collect()
}

#[test]
fn root_manifest_renders_scale_to_zero_services_and_triggers_that_validate() {
    let schemas = schemas();
    let docs = documents(&render(
        &repo().join("wasmfn.toml"),
        "registry.example/wasmfn:v1",
    ));
    let services: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Service").collect();
    assert_eq!(services.len(), 2);
    // The functions that keep the embedded store run in one pod, with a volume for it.
    let state = services[1];
    assert_eq!(state["metadata"]["name"], "wasmfn-state");
    assert_eq!(
        state["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/max-scale"],
        "1"
    );
    assert!(state["spec"]["template"]["spec"]["volumes"][0]["emptyDir"].is_object());
    let template = &services[0]["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"],
        "0"
    );
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/.well-known/wasmfn/ready"
    );
    // One Trigger per event function (event-echo, event-display, the saga's four, the
    // notification service, hello-p3), each delivering to that function's own path in its
    // Service.
    let triggers: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Trigger").collect();
    assert_eq!(triggers.len(), 8);
    for t in &triggers {
        let subscriber = &t["spec"]["subscriber"];
        let stateless = ["event-echo", "event-display", "payment-service"]
            .contains(&t["metadata"]["name"].as_str().unwrap());
        assert_eq!(
            subscriber["ref"]["name"],
            if stateless { "wasmfn" } else { "wasmfn-state" },
            "{t}"
        );
        assert_eq!(
            subscriber["uri"],
            format!(
                "/.well-known/wasmfn/events/{}",
                t["metadata"]["name"].as_str().unwrap()
            )
        );
    }
    // event-display's two subscriptions are one Trigger admitting either.
    let display = triggers
        .iter()
        .find(|t| t["metadata"]["name"] == "event-display")
        .unwrap();
    assert_eq!(
        display["spec"]["filters"],
        json!([{ "any": [{ "exact": { "type": "order.completed" } }, { "exact": { "type": "order.failed" } }] }])
    );
    for doc in &docs {
        let p = problems(&schemas, doc);
        assert!(p.is_empty(), "{p:#?}\n{doc:#}");
    }
}

#[test]
fn seed_apis_render_as_the_seed_describes_and_validate() {
    let schemas = schemas();
    let docs = documents(&render(
        &repo().join("deploy/seed-apis.toml"),
        "ghcr.io/resimate/wasmfn:v1",
    ));
    for doc in &docs {
        let p = problems(&schemas, doc);
        assert!(p.is_empty(), "{p:#?}\n{doc:#}");
    }
    let service = |name: &str| {
        docs.iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == name)
            .unwrap()
    };
    let users = service("users-api");
    assert_eq!(
        users["spec"]["traffic"],
        json!([
            { "revisionName": "users-api-stable", "percent": 90, "tag": "stable" },
            { "revisionName": "users-api-canary", "percent": 10, "tag": "canary" },
        ])
    );
    assert_eq!(
        users["spec"]["template"]["metadata"]["name"],
        "users-api-canary"
    );
    let env = &users["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .contains(&json!({ "name": "WASMFN_FUNCTIONS", "value": "users" }))
    );
    let core = service("core-model-api");
    let pod = &core["spec"]["template"]["spec"];
    assert_eq!(pod["containerConcurrency"], 100);
    assert_eq!(pod["timeoutSeconds"], 300);
    assert_eq!(pod["serviceAccountName"], "core-model-api-sa");
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["initialDelaySeconds"], 10);
    assert_eq!(container["readinessProbe"]["periodSeconds"], 5);
    let annotations = &core["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["autoscaling.knative.dev/class"],
        "kpa.autoscaling.knative.dev"
    );
    assert_eq!(
        annotations["autoscaling.knative.dev/target-utilization-percentage"],
        "70"
    );
    assert_eq!(
        annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );
    assert_eq!(
        core["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "resimate"
    );
    let notification = service("notification-service");
    let annotations = &notification["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["autoscaling.knative.dev/class"],
        "hpa.autoscaling.knative.dev"
    );
    assert_eq!(annotations["autoscaling.knative.dev/metric"], "cpu");
    let domains: Vec<(&str, &str)> = docs
        .iter()
        .filter(|d| d["kind"] == "DomainMapping")
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap(),
                d["spec"]["ref"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        domains,
        [
            ("api.resimate.io", "core-model-api"),
            ("campaigns.api.resimate.io", "campaigns-api")
        ]
    );
    let notifications = docs
        .iter()
        .find(|d| d["kind"] == "Trigger" && d["metadata"]["name"] == "notifications")
        .unwrap();
    assert_eq!(
        notifications["spec"]["filters"],
        json!([{ "any": [
            { "all": [{ "prefix": { "type": "order." } }, { "not": { "exact": { "type": "order.created" } } }] },
            { "exact": { "type": "payment.failed" } },
            { "prefix": { "type": "campaign." } },
        ] }])
    );
    assert_eq!(
        notifications["spec"]["delivery"]["deadLetterSink"]["ref"]["name"],
        "notification-dlq"
    );

    // The profiles: another namespace and domains, the services changed, nothing else.
    let staging = documents(&render_with(
        &repo().join("deploy/seed-apis.toml"),
        &[
            "--image",
            "ghcr.io/resimate/wasmfn:v1",
            "--profile",
            "staging",
        ],
    ));
    assert!(
        staging
            .iter()
            .all(|d| d["metadata"]["namespace"] == "resimate-staging")
    );
    let core = staging
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "core-model-api")
        .unwrap();
    let annotations = &core["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["autoscaling.knative.dev/max-scale"], "5");
    assert_eq!(
        annotations["autoscaling.knative.dev/window"], "30s",
        "kept from the service"
    );
    let env = core["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(env.contains(&json!({ "name": "ENVIRONMENT", "value": "staging" })));
    assert!(staging.iter().any(
        |d| d["kind"] == "DomainMapping" && d["metadata"]["name"] == "api.staging.resimate.io"
    ));
    assert!(
        docs.iter()
            .any(|d| d["kind"] == "Broker" && d["metadata"]["namespace"] == "resimate-apis")
    );
    assert!(
        !staging.iter().any(|d| d["kind"] == "CronJob"),
        "staging scales to zero all day"
    );
    seed_security_and_versions(&docs);
}

/// The seed's security section, schedule-based scaling and three-version traffic, as
/// `deploy/seed-apis.toml` renders them.
fn seed_security_and_versions(docs: &[Value]) {
    if let Some(p) = kubernetes_problems(docs) {
        assert!(p.is_empty(), "{p:#?}");
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    // Every Service has a NetworkPolicy selecting its pods, in from the seed's ingress
    // (Istio) and Knative's activator on queue-proxy's ports.
    for name in [
        "core-model-api",
        "campaigns-api",
        "users-api",
        "notification-service",
    ] {
        let policy = find("NetworkPolicy", name);
        assert_eq!(
            policy["spec"]["podSelector"]["matchLabels"]["serving.knative.dev/service"],
            name
        );
        let from: Vec<&str> = policy["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(from, ["knative-serving", "istio-system", "monitoring"]);
        assert_eq!(
            policy["spec"]["ingress"][1]["ports"],
            json!([{ "protocol": "TCP", "port": 8012 }, { "protocol": "TCP", "port": 8013 }])
        );
    }
    let egress = |name: &str| -> Vec<Value> {
        find("NetworkPolicy", name)["spec"]["egress"]
            .as_array()
            .unwrap()
            .clone()
    };
    let to_namespace = |ns: &str, port: u16| {
        json!({
            "to": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": ns } } }],
            "ports": [{ "protocol": "TCP", "port": port }],
        })
    };
    // users-api: DNS and PostgreSQL in `database`, from its grant; it emits nothing.
    let users = egress("users-api");
    assert_eq!(users.len(), 2, "{users:#?}");
    assert_eq!(
        users[0]["ports"][0],
        json!({ "protocol": "UDP", "port": 53 })
    );
    assert_eq!(users[1], to_namespace("database", 5432));
    // campaigns-api emits campaign events: the Broker's ingress, and Redis from `egress`.
    let campaigns = egress("campaigns-api");
    assert!(
        campaigns.contains(&to_namespace("knative-eventing", 8080)),
        "{campaigns:#?}"
    );
    assert!(
        campaigns.contains(&to_namespace("cache", 6379)),
        "{campaigns:#?}"
    );
    // notification-service: the webhook outside the cluster, on its port, private ranges
    // left out; no Broker (it only replies).
    let notification = egress("notification-service");
    assert!(notification.contains(&json!({
        "to": [{ "ipBlock": { "cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"] } }],
        "ports": [{ "protocol": "TCP", "port": 443 }],
    })), "{notification:#?}");
    assert!(!notification.contains(&to_namespace("knative-eventing", 8080)));

    // A ServiceAccount without a token for each Service that names none.
    for name in ["campaigns-api", "users-api", "notification-service"] {
        assert_eq!(
            find("ServiceAccount", name)["automountServiceAccountToken"],
            false
        );
        assert_eq!(
            find("Service", name)["spec"]["template"]["spec"]["serviceAccountName"],
            name
        );
    }
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == "core-model-api"),
        "core-model-api names its own account"
    );

    // Business hours: two CronJobs patching core-model-api's min-scale, as an account
    // allowed only to patch that Service.
    let up = find("CronJob", "core-model-api-business-hours");
    assert_eq!(up["spec"]["schedule"], "0 8 * * 1-5");
    assert_eq!(up["spec"]["timeZone"], "America/New_York");
    let pod = &up["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "core-model-api-scaler");
    let command = pod["containers"][0]["command"].as_array().unwrap();
    assert_eq!(
        command[..3],
        [
            json!("kubectl"),
            json!("patch"),
            json!("services.serving.knative.dev/core-model-api")
        ]
    );
    let patch: Value = serde_json::from_str(command.last().unwrap().as_str().unwrap()).unwrap();
    assert_eq!(
        patch["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"],
        "10"
    );
    assert_eq!(
        find("CronJob", "core-model-api-off-hours")["spec"]["schedule"],
        "0 18 * * 1-5"
    );
    assert_eq!(
        find("Role", "core-model-api-scaler")["rules"],
        json!([{ "apiGroups": ["serving.knative.dev"], "resources": ["services"], "resourceNames": ["core-model-api"], "verbs": ["patch"] }])
    );
    let binding = find("RoleBinding", "core-model-api-scaler");
    assert_eq!(binding["roleRef"]["name"], "core-model-api-scaler");
    assert_eq!(
        binding["subjects"],
        json!([{ "kind": "ServiceAccount", "name": "core-model-api-scaler", "namespace": "resimate-apis" }])
    );
    assert_eq!(
        docs.iter().filter(|d| d["kind"] == "Role").count(),
        1,
        "nothing else calls the API"
    );

    // Three versions, three revisions: this template is v3, and Knative splits 60/30/10.
    let notification = find("Service", "notification-service");
    assert_eq!(
        notification["spec"]["template"]["metadata"]["name"],
        "notification-service-v3"
    );
    assert_eq!(
        notification["spec"]["traffic"],
        json!([
            { "revisionName": "notification-service-v3", "percent": 60, "tag": "v3" },
            { "revisionName": "notification-service-v2", "percent": 30, "tag": "v2" },
            { "revisionName": "notification-service-v1", "percent": 10, "tag": "v1" },
        ])
    );
    assert!(
        notification["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "WASMFN_PIN_VERSIONS", "value": "notifications=v3" }))
    );
}

#[test]
fn older_versions_render_as_the_revisions_deployed_before() {
    let schemas = schemas();
    let service = |version: &str| {
        let docs = documents(&render_with(
            &repo().join("deploy/seed-apis.toml"),
            &[
                "--image",
                "ghcr.io/resimate/wasmfn:v1",
                "--current-version",
                &format!("notification-service={version}"),
            ],
        ));
        let s = docs
            .into_iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "notification-service")
            .unwrap();
        assert_eq!(problems(&schemas, &s), Vec::<String>::new());
        s
    };
    let v1 = service("v1");
    assert_eq!(
        v1["spec"]["template"]["metadata"]["name"],
        "notification-service-v1"
    );
    assert_eq!(
        v1["spec"]["traffic"],
        json!([{ "revisionName": "notification-service-v1", "percent": 100, "tag": "v1" }])
    );
    let v2 = service("v2");
    assert_eq!(
        v2["spec"]["traffic"],
        json!([
            { "revisionName": "notification-service-v2", "percent": 90, "tag": "v2" },
            { "revisionName": "notification-service-v1", "percent": 10, "tag": "v1" },
        ])
    );
    assert!(
        v2["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .contains(&json!({ "name": "WASMFN_PIN_VERSIONS", "value": "notifications=v2" }))
    );
    let out = wasmfn(
        &[
            "deploy",
            "render",
            "--image",
            "x",
            "--current-version",
            "notification-service=v9",
        ],
        &repo().join("deploy/seed-apis.toml"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("has no version `v9`; it has v3, v2, v1"),
        "{err}"
    );
}

#[test]
fn network_policies_follow_the_grants_and_say_what_they_cannot() {
    let text = format!(
        "[deploy]\nnamespace = \"shop\"\nprivate_ranges = [\"10.0.0.0/8\"]\n\n\
         [key_value.sessions]\ntype = \"redis\"\nurl = {{ env = \"REDIS_URL\" }}\n\n\
         [key_value.cache]\ntype = \"redis\"\nurl = \"redis://redis.cache.svc.cluster.local:6380\"\n\n\
         [[functions]]\nname = \"api\"\ncomponent = {:?}\nroutes = [\"/api\"]\n\
         key_value_stores = [\"sessions\", \"cache\"]\n\
         allowed_outbound_hosts = [\"https://*.stripe.com\", \"http://10.2.3.4:8080\", \"http://users.shop:8080\", \"http://echo.wasmfn.internal\"]\n\n\
         [[functions]]\nname = \"quiet\"\ncomponent = {:?}\nroutes = [\"/quiet\"]\n\n\
         [[services]]\nname = \"api\"\nfunctions = [\"api\"]\nsecrets = [{{ env = \"REDIS_URL\", secret = \"r\", key = \"url\" }}]\n\
         env = {{ OTEL_EXPORTER_OTLP_ENDPOINT = \"http://otel-collector.observability:4318\" }}\n\n\
         [[services]]\nname = \"quiet\"\nfunctions = [\"quiet\"]\nnetwork_policy = false\nservice_account = \"mine\"\n",
        guests::OUTBOUND_CALL,
        guests::HELLO,
    );
    let manifest = Manifest::parse(Path::new("/m/wasmfn.toml"), &text).unwrap();
    let docs = wasmfn::knative::objects(&manifest, "img").unwrap();
    if let Some(p) = kubernetes_problems(&docs) {
        assert!(p.is_empty(), "{p:#?}");
    }
    let policies: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "NetworkPolicy")
        .collect();
    assert_eq!(policies.len(), 1, "network_policy = false renders none");
    let egress = policies[0]["spec"]["egress"].as_array().unwrap();
    let peers: Vec<(Value, Value)> = egress
        .iter()
        .map(|r| (r["to"][0].clone(), r["ports"].clone()))
        .collect();
    let tcp = |p: u16| json!([{ "protocol": "TCP", "port": p }]);
    let ns = |n: &str| json!({ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": n } } });
    for expected in [
        // The wildcard outside the cluster: every public address, on its port.
        (
            json!({ "ipBlock": { "cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"] } }),
            tcp(443),
        ),
        // A named address, private or not.
        (json!({ "ipBlock": { "cidr": "10.2.3.4/32" } }), tcp(8080)),
        // `name.namespace`.
        (ns("shop"), tcp(8080)),
        // A store whose URL is written in the manifest.
        (ns("cache"), tcp(6380)),
        // The OTLP endpoint.
        (ns("observability"), tcp(4318)),
    ] {
        assert!(peers.contains(&expected), "{expected:?} not in {peers:#?}");
    }
    // The internal call needs no rule; outbound-call emits nothing; DNS and the five.
    assert_eq!(egress.len(), 6, "{egress:#?}");
    // `quiet` runs as the account it names, so none is rendered for it.
    let accounts: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceAccount")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["api"]);

    let warnings = wasmfn::knative::warnings(&manifest);
    assert!(
        warnings.iter().any(
            |w| w.contains("function `api`'s grant `https://*.stripe.com`") && w.contains("cannot")
        ),
        "{warnings:#?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("store `sessions`") && w.contains("egress")),
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
}

#[test]
fn new_cluster_keys_are_checked_with_the_line() {
    let base = format!(
        "[[functions]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"/hello\"]\n",
        guests::HELLO
    );
    let versions = format!(
        "[[functions]]\nname = \"notes\"\nroutes = [\"/notes\"]\nversions = [{{ name = \"v2\", component = {:?}, weight = 60 }}, {{ name = \"v1\", component = {:?}, weight = 40 }}]\n",
        guests::HELLO,
        guests::HELLO
    );
    let service = "[[services]]\nname = \"api\"\nfunctions = [\"hello\"]\n";
    let cases: Vec<(String, usize, &str)> = vec![
        (
            "[deploy]\ningress_namespace = \"Istio\"\n".into(),
            7,
            "ingress_namespace \"Istio\" must be 1-63",
        ),
        (
            "[deploy]\nmonitoring_namespace = \"-x\"\n".into(),
            7,
            "monitoring_namespace \"-x\" must be 1-63",
        ),
        (
            "[deploy]\nprivate_ranges = [\"10.0.0.0/33\"]\n".into(),
            7,
            "is not a CIDR",
        ),
        (
            "[deploy]\nkubectl_image = \"\"\n".into(),
            7,
            "not an image reference",
        ),
        (
            format!("{service}network_policy = \"no\"\n"),
            9,
            "invalid type",
        ),
        (
            format!("{service}egress = [\"cache:6379\"]\n"),
            9,
            "`egress` entry \"cache:6379\" has no scheme",
        ),
        (
            format!(
                "{service}scaling_schedule = [{{ name = \"up\", cron = \"0 0 8 * * 1-5\", min_scale = 3 }}]\n"
            ),
            9,
            "not a five-field cron",
        ),
        (
            format!(
                "{service}scaling_schedule = [{{ name = \"Up\", cron = \"0 8 * * *\", min_scale = 3 }}]\n"
            ),
            9,
            "scaling schedule name \"Up\"",
        ),
        (
            format!(
                "{service}max_scale = 2\nscaling_schedule = [{{ name = \"up\", cron = \"0 8 * * *\", min_scale = 3 }}]\n"
            ),
            10,
            "above the service's max_scale 2",
        ),
        (
            format!(
                "{service}scaling_schedule = [{{ name = \"up\", cron = \"0 8 * * *\", min_scale = 3, timezone = \"Mars/Olympus\" }}]\n"
            ),
            9,
            "not an IANA time zone",
        ),
        (
            format!(
                "{service}scaling_schedule = [{{ name = \"up\", cron = \"0 8 * * *\", min_scale = 3 }}, {{ name = \"up\", cron = \"0 9 * * *\", min_scale = 1 }}]\n"
            ),
            9,
            "two scaling schedules named `up`",
        ),
        (
            format!(
                "{service}revision = \"api-v2\"\nscaling_schedule = [{{ name = \"up\", cron = \"0 8 * * *\", min_scale = 3 }}]\n"
            ),
            10,
            "fixed revision name",
        ),
        (
            format!(
                "{service}traffic = [{{ revision = \"api-v1\", percent = 100 }}]\nscaling_schedule = [{{ name = \"up\", cron = \"0 8 * * *\", min_scale = 3 }}]\n"
            ),
            10,
            "pins named revisions",
        ),
        (
            format!("{service}versions_as_revisions = true\n"),
            9,
            "exactly one of its functions needs `versions` (it has 0)",
        ),
        (
            format!("{service}secret_files = [{{ path = \"/vault/secrets\" }}]\n"),
            6,
            "one of `secret`",
        ),
        (
            format!(
                "{service}secret_files = [{{ secret = \"s\", injected_by = \"vault\", path = \"/s\" }}]\n"
            ),
            6,
            "one of `secret`",
        ),
    ];
    for (extra, line, expected) in &cases {
        let text = format!("{base}\n{extra}");
        let err = Manifest::parse(Path::new("/m/wasmfn.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{extra}: {err}");
        assert!(
            err.starts_with(&format!("/m/wasmfn.toml:{line}:")),
            "{extra}: {err}"
        );
    }
    let text = format!(
        "{versions}\n[[services]]\nname = \"notes\"\nfunctions = [\"notes\"]\nversions_as_revisions = true\ntraffic = [{{ latest = true, percent = 100 }}]\n"
    );
    let err = Manifest::parse(Path::new("/m/wasmfn.toml"), &text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("remove `revision` and `traffic`"), "{err}");
    assert!(err.starts_with("/m/wasmfn.toml:9:"), "{err}");
}

#[test]
fn a_replay_job_runs_the_host_image_against_the_event_store() {
    let out = wasmfn(
        &[
            "deploy",
            "replay-job",
            "--image",
            "ghcr.io/resimate/wasmfn:v1",
            "--function",
            "command-service",
            "--start",
            "2024-01-01T00:00:00Z",
            "--end",
            "2024-01-31T23:59:59Z",
            "--aggregate",
            "account-12345",
        ],
        &repo().join("deploy/patterns.toml"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(docs.len(), 1);
    if let Some(p) = kubernetes_problems(&docs) {
        assert!(p.is_empty(), "{p:#?}");
    }
    let job = &docs[0];
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["namespace"], "resimate-events");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/resimate/wasmfn:v1");
    assert_eq!(container["command"], json!(["/wasmfn", "replay"]));
    assert_eq!(
        container["env"],
        json!([
            { "name": "EVENT_STORE_URL", "value": "http://command-service.resimate-events.svc.cluster.local/accounts" },
            { "name": "BROKER_URL", "value": "http://broker-ingress.knative-eventing.svc.cluster.local/resimate-events/default" },
            { "name": "START_TIME", "value": "2024-01-01T00:00:00Z" },
            { "name": "END_TIME", "value": "2024-01-31T23:59:59Z" },
            { "name": "AGGREGATE_ID", "value": "account-12345" },
        ])
    );
    // A bad time is refused before anything is printed.
    let out = wasmfn(
        &[
            "deploy",
            "replay-job",
            "--image",
            "x",
            "--function",
            "command-service",
            "--start",
            "yesterday",
            "--end",
            "2024-01-31T23:59:59Z",
        ],
        &repo().join("deploy/patterns.toml"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--start \"yesterday\" is not an RFC 3339 time"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn yaml_under_deploy_is_valid_and_matches_the_renderer() {
    let schemas = schemas();
    let dir = repo().join("deploy/knative");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = documents(&text);
        for doc in &docs {
            let p = problems(&schemas, doc);
            assert!(p.is_empty(), "{}: {p:#?}", path.display());
        }
        if let Some(p) = kubernetes_problems(&docs) {
            assert!(p.is_empty(), "{}: {p:#?}", path.display());
        }
        // Each file is the rendering of the manifest of the same stem under deploy/;
        // `<stem>.<profile>.yaml` with that profile.
        let stem = path.file_stem().unwrap().to_str().unwrap();
        let (stem, profile) = match stem.split_once('.') {
            Some((stem, profile)) => (stem, Some(profile)),
            None => (stem, None),
        };
        let manifest = repo().join("deploy").join(stem).with_extension("toml");
        let image = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("image: "))
            .unwrap()
            .to_string();
        let mut args = vec!["--image", &image];
        if let Some(profile) = profile {
            args.extend(["--profile", profile]);
        }
        assert_eq!(
            text,
            render_with(&manifest, &args),
            "{} is stale: run `wasmfn deploy render --manifest {} {} > {}`",
            path.display(),
            manifest.display(),
            args.join(" "),
            path.display()
        );
        checked += 1;
    }
    assert!(checked > 0, "no YAML under {}", dir.display());
}

#[test]
fn the_validator_rejects_what_knative_would_reject() {
    // A check that cannot fail is no check: break valid objects and expect problems.
    let schemas = schemas();
    let docs = documents(&render(&repo().join("deploy/seed-apis.toml"), "img"));
    // Kubernetes' own schemas, strictly: an unknown field, a port of the wrong type.
    let mut policy = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy")
        .unwrap()
        .clone();
    policy["spec"]["egress"][0]["ports"][0]["bogus"] = json!(1);
    let mut cron = docs
        .iter()
        .find(|d| d["kind"] == "CronJob")
        .unwrap()
        .clone();
    cron["spec"]["schedule"] = json!(8);
    if let Some(p) = kubernetes_problems(&[policy, cron]) {
        assert!(
            p.iter().any(|p| p.contains("'bogus' was unexpected")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|p| p.contains("cronjob") && p.contains("schedule")),
            "{p:#?}"
        );
    }
    let service = docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .unwrap()
        .clone();
    let trigger = docs
        .iter()
        .find(|d| d["kind"] == "Trigger")
        .unwrap()
        .clone();

    let mut s = service.clone();
    s["spec"]["template"]["spec"]["containerConcurrency"] = json!("lots");
    assert!(
        !problems(&schemas, &s).is_empty(),
        "string containerConcurrency"
    );
    let mut s = service.clone();
    s["spec"]["traffic"] = json!([{ "percent": "ninety" }]);
    assert!(!problems(&schemas, &s).is_empty(), "string percent");
    let mut s = service.clone();
    s["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("http");
    assert!(!problems(&schemas, &s).is_empty(), "string port");

    let mut t = trigger.clone();
    t["spec"]["filters"] = json!([{ "exact": { "type": "a" }, "prefix": { "type": "b" } }]);
    assert!(
        !problems(&schemas, &t).is_empty(),
        "two dialects in one filter"
    );
    let mut t = trigger.clone();
    t["spec"]["filters"] = json!([{ "exact": { "type": "a", "source": "b" } }]);
    assert!(
        !problems(&schemas, &t).is_empty(),
        "two attributes in exact"
    );
    let mut t = trigger;
    t["spec"]["filters"] = json!([{ "any": [] }]);
    t["spec"]["broker"] = json!("");
    assert!(problems(&schemas, &t).len() >= 2, "empty any, no broker");
}

#[test]
fn manifests_knative_would_reject_fail_at_render_with_the_line() {
    let base = format!(
        "[[functions]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"/hello\"]\n",
        guests::HELLO
    );
    let cases = [
        ("[deploy]\nport = 9090\n", 7, "reserved by Knative"),
        (
            "[[services]]\nname = \"api\"\nfunctions = [\"hello\"]\ntraffic = [{ latest = true, percent = 90 }, { revision = \"api-v1\", percent = 20 }]\n",
            9,
            "add up to 110, not 100",
        ),
        (
            "[[services]]\nname = \"api\"\nfunctions = [\"hello\"]\ntraffic = [{ latest = true, percent = 100, tag = \"Blue_1\" }]\n",
            9,
            "tag \"Blue_1\" must be",
        ),
        (
            "[[services]]\nname = \"api\"\nfunctions = [\"hello\"]\nrevision = \"v2\"\n",
            9,
            "must start with the service name",
        ),
        (
            "[[services]]\nname = \"api\"\nfunctions = [\"nope\"]\n",
            8,
            "no function is named `nope`",
        ),
        (
            "[[services]]\nname = \"api\"\nfunctions = [\"hello\"]\ncontainer_concurrency = 5000\n",
            9,
            "0 (unlimited) to 1000",
        ),
        (
            "[[services]]\nname = \"api\"\nfunctions = [\"hello\"]\nwindow = \"2s\"\n",
            9,
            "between 6s and 1h",
        ),
        (
            "[[services]]\nname = \"api\"\nfunctions = []\n",
            6,
            "function `hello` is in no service",
        ),
    ];
    for (extra, line, expected) in cases {
        let text = format!("{base}\n{extra}");
        let err = Manifest::parse(Path::new("/m/wasmfn.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{extra}: {err}");
        assert!(
            err.starts_with(&format!("/m/wasmfn.toml:{line}:")),
            "{extra}: {err}"
        );
    }
}

#[test]
fn capabilities_render_as_knative_needs_them_or_fail_with_the_line() {
    let functions = format!(
        "[key_value.sessions]\ntype = \"redis\"\nurl = {{ env = \"REDIS_URL\" }}\n\n\
         [[functions]]\nname = \"users\"\ncomponent = {:?}\nroutes = [\"/users\"]\n\
         key_value_stores = [\"default\", \"sessions\"]\n\
         variables = {{ api_key = {{ env = \"API_KEY\" }}, token = {{ file = \"/var/run/secrets/hooks/token\" }}, region = {{ env = \"REGION\", default = \"eu\" }} }}\n",
        guests::COUNTER
    );
    let service = |extra: &str| {
        format!("{functions}\n[[services]]\nname = \"users-api\"\nfunctions = [\"users\"]\n{extra}")
    };
    let secrets = "secrets = [{ env = \"REDIS_URL\", secret = \"redis\", key = \"url\" }, { env = \"API_KEY\", secret = \"api\", key = \"key\" }]\nsecret_files = [{ secret = \"hooks\", path = \"/var/run/secrets/hooks\" }]\n";
    let cases = [
        // The embedded store would be split between pods.
        (service(secrets), "use a redis store"),
        (
            service(&format!("max_scale = 3\n{secrets}")),
            "set max_scale = 1",
        ),
        // Each value the functions read from outside must be given by the Service.
        (
            service(
                "max_scale = 1\nsecrets = [{ env = \"REDIS_URL\", secret = \"redis\", key = \"url\" }]\nsecret_files = [{ secret = \"hooks\", path = \"/var/run/secrets/hooks\" }]\n",
            ),
            "variable `api_key` reads the environment variable API_KEY, which service `users-api` does not set",
        ),
        (
            service(
                "max_scale = 1\nsecrets = [{ env = \"REDIS_URL\", secret = \"redis\", key = \"url\" }, { env = \"API_KEY\", secret = \"api\", key = \"key\" }]\n",
            ),
            "reads /var/run/secrets/hooks/token, which no Secret of service `users-api` is mounted at",
        ),
        (
            service(
                "max_scale = 1\nenv = { REDIS_URL = \"redis://redis:6379\" }\nsecrets = [{ env = \"API_KEY\", secret = \"api\", key = \"key\" }]\nsecret_files = [{ secret = \"hooks\", path = \"/var/run/secrets/hooks\" }]\n",
            ),
            "must set from a Secret",
        ),
    ];
    let line = functions.lines().count() + 2;
    for (text, expected) in cases {
        // A manifest that serves as it is on this machine, and would not on Knative.
        let manifest = Manifest::parse(Path::new("/m/wasmfn.toml"), &text).unwrap();
        let err = wasmfn::knative::render(&manifest, "registry.example/wasmfn:v1")
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{err}");
        assert!(err.starts_with(&format!("/m/wasmfn.toml:{line}:")), "{err}");
    }

    let (_dir, path) = common::manifest(&service(&format!("max_scale = 1\n{secrets}")));
    let objects = documents(&render(&path, "registry.example/wasmfn:v1"));
    let schemas = schemas();
    for object in &objects {
        assert_eq!(
            problems(&schemas, object),
            Vec::<String>::new(),
            "{object:#}"
        );
    }
    let service = objects.iter().find(|o| o["kind"] == "Service").unwrap();
    let pod = &service["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_array().unwrap();
    let env_of = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        env_of("WASMFN_DATA_DIR").unwrap()["value"],
        "/var/lib/wasmfn"
    );
    assert_eq!(
        env_of("REDIS_URL").unwrap()["valueFrom"]["secretKeyRef"]["name"],
        "redis"
    );
    assert_eq!(pod["volumes"][0]["emptyDir"], serde_json::json!({}));
    assert_eq!(pod["volumes"][1]["secret"]["secretName"], "hooks");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/var/lib/wasmfn");
    assert_eq!(container["volumeMounts"][1]["readOnly"], true);
    assert_eq!(
        container["securityContext"]["readOnlyRootFilesystem"], true,
        "only the data volume is writable"
    );
}

#[test]
fn delivery_settings_render_as_knative_delivery_or_fail_with_the_line() {
    let base = format!(
        "[deploy]\ncreate_broker = true\ndelivery = {{ retry = 5, backoff_policy = \"exponential\", backoff_delay = \"200ms\", dead_letter = {{ function = \"dlq\" }} }}\n\n\
         [[functions]]\nname = \"orders\"\ncomponent = {c:?}\nevents = [{{ type = \"order.created\" }}]\n\
         delivery = {{ retry = 2, backoff_policy = \"linear\", backoff_delay = \"1s\", timeout = \"10s\", dead_letter = {{ uri = \"http://dlq.example/events\" }} }}\n\n\
         [[functions]]\nname = \"dlq\"\ncomponent = {c:?}\nevents = [{{ type = \"never\" }}]\n",
        c = guests::EVENT_DISPLAY
    );
    let (_dir, path) = common::manifest(&base);
    let docs = documents(&render(&path, "registry.example/wasmfn:v1"));
    let schemas = schemas();
    for doc in &docs {
        assert_eq!(problems(&schemas, doc), Vec::<String>::new(), "{doc:#}");
    }
    let broker = docs.iter().find(|d| d["kind"] == "Broker").unwrap();
    assert_eq!(
        broker["spec"]["delivery"],
        json!({
            "retry": 5, "backoffPolicy": "exponential", "backoffDelay": "PT0.2S",
            "deadLetterSink": {
                "ref": { "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "wasmfn" },
                "uri": "/.well-known/wasmfn/events/dlq",
            },
        })
    );
    let orders = docs
        .iter()
        .find(|d| d["kind"] == "Trigger" && d["metadata"]["name"] == "orders")
        .unwrap();
    assert_eq!(
        orders["spec"]["delivery"],
        json!({
            "retry": 2, "backoffPolicy": "linear", "backoffDelay": "PT1S", "timeout": "PT10S",
            "deadLetterSink": { "uri": "http://dlq.example/events" },
        })
    );

    // Each key refused with its line when wrong.
    let cases = [
        (
            "backoff_policy = \"linear\"",
            "backoff_policy = \"random\"",
            9,
            "\"linear\" or \"exponential\"",
        ),
        (
            "backoff_delay = \"1s\"",
            "backoff_delay = \"0s\"",
            9,
            "more than 0",
        ),
        ("retry = 2", "retry = -1", 9, "0 to 100"),
        (
            "{ uri = \"http://dlq.example/events\" }",
            "{ uri = \"dlq\" }",
            9,
            "must be one of",
        ),
        (
            "{ function = \"dlq\" }",
            "{ function = \"nobody\" }",
            1,
            "no function of that name takes events",
        ),
        (
            "create_broker = true",
            "create_broker = false",
            3,
            "does not create the Broker",
        ),
    ];
    for (from, to, line, expected) in cases {
        assert!(base.contains(from), "{from}");
        let text = base.replacen(from, to, 1);
        let err = Manifest::parse(Path::new("/m/wasmfn.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{to}: {err}");
        assert!(
            err.starts_with(&format!("/m/wasmfn.toml:{line}:")),
            "{to}: {err}"
        );
    }
    let err = Manifest::parse(
        Path::new("/m/wasmfn.toml"),
        "[[functions]]\nname = \"f\"\ncomponent = \"f.wasm\"\ndelivery = { retry = 1 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("subscribes to no events"), "{err}");
}

#[test]
fn schedules_render_as_pingsources_or_fail_with_the_line() {
    let text = format!(
        "[deploy]\nnamespace = \"jobs\"\n\n[[functions]]\nname = \"windows\"\ncomponent = {:?}\n\
         schedules = [\n  {{ cron = \"*/5 * * * *\", name = \"close\", timezone = \"Europe/Berlin\", data = {{ window = \"5m\" }} }},\n  {{ cron = \"0 3 * * *\", data = \"nightly\" }},\n]\n",
        guests::EVENT_DISPLAY
    );
    let (_dir, path) = common::manifest(&text);
    let docs = documents(&render(&path, "registry.example/wasmfn:v1"));
    let schemas = schemas();
    for doc in &docs {
        assert_eq!(problems(&schemas, doc), Vec::<String>::new(), "{doc:#}");
    }
    let pings: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "PingSource").collect();
    assert_eq!(pings.len(), 2);
    assert_eq!(pings[0]["metadata"]["name"], "windows-close");
    assert_eq!(
        pings[0]["spec"],
        json!({
            "schedule": "*/5 * * * *",
            "timezone": "Europe/Berlin",
            "data": r#"{"window":"5m"}"#,
            "contentType": "application/json",
            "ceOverrides": { "extensions": { "schedule": "close" } },
            "sink": {
                "ref": { "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "wasmfn" },
                "uri": "/.well-known/wasmfn/events/windows",
            },
        })
    );
    assert_eq!(pings[1]["metadata"]["name"], "windows-schedule-1");
    assert_eq!(pings[1]["spec"]["contentType"], "text/plain");
    // A schedule alone makes a function an event function, but makes no Trigger.
    assert!(!docs.iter().any(|d| d["kind"] == "Trigger"));

    // Seconds fire locally only: render refuses them, naming the function's line.
    let seconds = text.replace("*/5 * * * *", "*/5 * * * * *");
    let manifest = Manifest::parse(Path::new("/m/wasmfn.toml"), &seconds).unwrap();
    let err = wasmfn::knative::render(&manifest, "x")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/m/wasmfn.toml:6:") && err.contains("seconds field"),
        "{err}"
    );

    for (from, to, expected) in [
        (
            "*/5 * * * *",
            "every five minutes",
            "is not a cron expression",
        ),
        ("Europe/Berlin", "Mars/Olympus", "not an IANA time zone"),
        (
            "name = \"close\"",
            "name = \"Close!\"",
            "must be 1-40 of a-z",
        ),
        (
            "name = \"close\"",
            "name = \"schedule-1\"",
            "two schedules named `schedule-1`",
        ),
    ] {
        let err = Manifest::parse(Path::new("/m/wasmfn.toml"), &text.replacen(from, to, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{to}: {err}");
        assert!(
            err.starts_with("/m/wasmfn.toml:8:") || err.starts_with("/m/wasmfn.toml:9:"),
            "{to}: {err}"
        );
    }
}

#[test]
fn flows_render_as_sequences_and_parallels_or_fail_with_the_line() {
    let fns: String = ["validator", "enricher", "transformer", "audit", "big-only"]
        .iter()
        .map(|n| {
            format!(
                "[[functions]]\nname = \"{n}\"\ncomponent = {:?}\n\n",
                guests::EVENT_ECHO
            )
        })
        .collect();
    let flows = "[[sequences]]\nname = \"ingest\"\nsteps = [\"validator\", \"enricher\", \"transformer\"]\nevents = [{ type = \"order.received\" }]\n\n\
                 [[parallels]]\nname = \"fan-out\"\nbranches = [{ subscriber = \"audit\" }, { filter = \"big-only\", subscriber = \"enricher\" }]\nreply = \"none\"\n";
    let text = format!("[deploy]\ncreate_broker = true\n\n{fns}{flows}");
    let (_dir, path) = common::manifest(&text);
    let docs = documents(&render(&path, "registry.example/wasmfn:v1"));
    let schemas = schemas();
    for doc in &docs {
        assert_eq!(problems(&schemas, doc), Vec::<String>::new(), "{doc:#}");
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let step = |f: &str| {
        json!({
            "ref": { "apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "wasmfn" },
            "uri": format!("/.well-known/wasmfn/events/{f}"),
        })
    };
    let sequence = find("Sequence", "ingest");
    assert_eq!(sequence["apiVersion"], "flows.knative.dev/v1");
    assert_eq!(
        sequence["spec"],
        json!({
            "steps": [step("validator"), step("enricher"), step("transformer")],
            "reply": { "ref": { "apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default" } },
        })
    );
    assert_eq!(
        find("Trigger", "ingest")["spec"]["subscriber"],
        json!({ "ref": { "apiVersion": "flows.knative.dev/v1", "kind": "Sequence", "name": "ingest" } })
    );
    let parallel = find("Parallel", "fan-out");
    assert_eq!(
        parallel["spec"],
        json!({ "branches": [
            { "subscriber": step("audit") },
            { "subscriber": step("enricher"), "filter": step("big-only") },
        ] })
    );
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "Trigger" && d["metadata"]["name"] == "fan-out")
    );

    for (from, to, expected) in [
        (
            "\"enricher\", \"transformer\"]",
            "\"enricher\", \"nope\"]",
            "no function is named `nope`",
        ),
        (
            "steps = [\"validator\", \"enricher\", \"transformer\"]",
            "steps = []",
            "needs `steps",
        ),
        ("reply = \"none\"", "reply = \"elsewhere\"", "\"broker\""),
        (
            "name = \"fan-out\"",
            "name = \"ingest\"",
            "two flows are named `ingest`",
        ),
        (
            "name = \"fan-out\"",
            "name = \"audit\"",
            "has a function's name",
        ),
        ("name = \"fan-out\"", "name = \"Fan_Out\"", "flow name"),
    ] {
        assert!(text.contains(from), "{from}");
        let err = Manifest::parse(Path::new("/m/wasmfn.toml"), &text.replacen(from, to, 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{to}: {err}");
        assert!(err.starts_with("/m/wasmfn.toml:"), "{err}");
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line > 20, "points into the flows: {err}");
    }
}

#[test]
fn serving_settings_and_profiles_are_checked_with_the_line() {
    let base = format!(
        "[deploy]\nnamespace = \"apis\"\n\n[[functions]]\nname = \"hello\"\ncomponent = {:?}\nroutes = [\"/hello\"]\ntimeout = \"30s\"\n\n[[services]]\nname = \"api\"\nfunctions = [\"hello\"]\n",
        guests::HELLO
    );
    let line = base.lines().count() + 1;
    for (extra, expected) in [
        ("class = \"hpa\"", "needs metric = \"cpu\" or \"memory\""),
        (
            "class = \"hpa\"\nmetric = \"concurrency\"",
            "with class \"hpa\" the metric is \"cpu\" or \"memory\"",
        ),
        (
            "metric = \"cpu\"",
            "with class \"kpa\" the metric is \"concurrency\" or \"rps\"",
        ),
        ("class = \"knative\"", "class must be \"kpa\""),
        (
            "target_utilization = 0",
            "`target_utilization` must be 1 to 100",
        ),
        (
            "panic_threshold = 50",
            "`panic_threshold` must be 110 to 1000",
        ),
        ("panic_window = 101", "`panic_window` must be 1 to 100"),
        (
            "activation_scale = 0",
            "`activation_scale` must be 1 to 1000",
        ),
        ("scale_to_zero_retention = \"2h\"", "at most 1h"),
        ("timeout = \"5s\"", "would cut off function `hello`"),
        ("timeout = \"20m\"", "at most 600s"),
        (
            "annotations = { \"bad key!\" = \"x\" }",
            "is not a Kubernetes key",
        ),
        (
            "template_labels = { \"-x\" = \"y\" }",
            "is not a Kubernetes key",
        ),
        ("domains = [\"Not A Domain\"]", "not a lower-case DNS name"),
        (
            "service_account = \"Bad_SA\"",
            "service_account \"Bad_SA\" must be",
        ),
        ("readiness = { period = \"0s\" }", "whole seconds from 1s"),
        ("liveness = { failure_threshold = 0 }", "1 to 100"),
        ("liveness = { every = \"1s\" }", "unknown field `every`"),
    ] {
        let err = Manifest::parse(Path::new("/m/wasmfn.toml"), &format!("{base}{extra}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{extra}: {err}");
        let at: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(
            (line..line + extra.lines().count()).contains(&at),
            "{extra}: {err}"
        );
    }

    let profiles = format!(
        "{base}env = {{ FOO = \"1\" }}\n\n[profiles.eu]\nnamespace = \"apis-eu\"\n[profiles.eu.services.api]\nmax_scale = 2\n[profiles.eu.services.nope]\nmin_scale = 1\n"
    );
    let err = Manifest::parse_profile(Path::new("/m/wasmfn.toml"), &profiles, Some("eu"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("changes service `nope`"), "{err}");
    assert!(err.starts_with("/m/wasmfn.toml:19:"), "{err}");
    let err = Manifest::parse_profile(Path::new("/m/wasmfn.toml"), &profiles, Some("us"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("there is no profile `us`; the manifest has eu"),
        "{err}"
    );

    // An env var no one reads renders, with a warning that says so.
    let manifest = Manifest::parse(
        Path::new("/m/wasmfn.toml"),
        &format!("{base}env = {{ FOO = \"1\", LOG_LEVEL = \"warn\" }}\n"),
    )
    .unwrap();
    let warnings = wasmfn::knative::warnings(&manifest);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("sets FOO, which nothing reads"),
        "{warnings:?}"
    );
}

#[test]
fn traffic_can_be_shifted_from_the_command_line() {
    // Promote the canary to half the traffic without editing the manifest.
    let run = |traffic: &str| {
        Command::new(env!("CARGO_BIN_EXE_wasmfn"))
            .args(["deploy", "render", "--image", "img", "--manifest"])
            .arg(repo().join("deploy/seed-apis.toml"))
            .args(["--traffic", traffic])
            .output()
            .unwrap()
    };
    let out = run("users-api=users-api-stable=50:stable,@latest=50:canary");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = documents(&String::from_utf8(out.stdout).unwrap());
    let users = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "users-api")
        .unwrap();
    assert_eq!(
        users["spec"]["traffic"],
        json!([
            { "revisionName": "users-api-stable", "percent": 50, "tag": "stable" },
            { "latestRevision": true, "percent": 50, "tag": "canary" },
        ])
    );
    let schemas = schemas();
    assert!(problems(&schemas, users).is_empty());

    for (bad, says) in [
        ("users-api=users-api-stable=50,@latest=60", "add up to 110"),
        ("nope=@latest=100", "does not define"),
        ("users-api=@latest=100:Canary", "tag \"Canary\""),
    ] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{bad}: {stderr}");
    }
}

/// What the rendered Service derives rather than copies, asserted on the objects
/// themselves (not only through the committed YAML): the concurrency the pod can really
/// run and 70% of it as the target, the `h2c` port, the 1 s probes on the host's paths.
#[test]
fn the_service_derives_its_concurrency_target_port_and_probes() {
    let text = format!(
        "[[functions]]\nname = \"a\"\ncomponent = \"{hello}\"\nroutes = [\"/a\"]\nconcurrency = 10\n\n\
         [[functions]]\nname = \"b\"\ncomponent = \"{hello}\"\nroutes = [\"/b\"]\nconcurrency = 20\n",
        hello = guests::HELLO
    );
    let manifest = Manifest::parse(Path::new("/virtual/wasmfn.toml"), &text).unwrap();
    let objects = wasmfn::knative::objects(&manifest, "registry.example/wasmfn:v1").unwrap();
    let service = objects
        .iter()
        .find(|o| o["kind"] == "Service")
        .expect("a Service");
    let template = &service["spec"]["template"];
    // The two functions' concurrency (10 + 20) is below max_in_flight and the pool.
    assert_eq!(template["spec"]["containerConcurrency"], 30);
    assert_eq!(
        template["metadata"]["annotations"]["autoscaling.knative.dev/target"],
        "21"
    );
    let container = &template["spec"]["containers"][0];
    assert_eq!(
        container["ports"],
        json!([{ "name": "h2c", "containerPort": 8080 }])
    );
    for (probe, path) in [
        ("readinessProbe", "/.well-known/wasmfn/ready"),
        ("livenessProbe", "/.well-known/wasmfn/live"),
    ] {
        assert_eq!(container[probe]["periodSeconds"], 1, "{probe}");
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
    }
    // A function without `concurrency` leaves only the host's limits: max_in_flight
    // (1,000) and the pool (256) bound it.
    let text = text.replace("concurrency = 20\n", "");
    let manifest = Manifest::parse(Path::new("/virtual/wasmfn.toml"), &text).unwrap();
    let objects = wasmfn::knative::objects(&manifest, "registry.example/wasmfn:v1").unwrap();
    let service = objects.iter().find(|o| o["kind"] == "Service").unwrap();
    assert_eq!(
        service["spec"]["template"]["spec"]["containerConcurrency"],
        wasmfn::engine::DEFAULT_POOL_INSTANCES
    );
}

#[test]
fn a_spin_app_renders_from_its_spin_toml_and_validates() {
    // No wasmfn file: the Spin manifest, and its runtime configuration putting the store on
    // Redis, which is what lets the Service run several pods and scale to zero.
    let dir = tempfile::tempdir().unwrap();
    let spin = dir.path().join("spin.toml");
    std::fs::write(
        &spin,
        "spin_manifest_version = 2\n[application]\nname = \"shop\"\n\
         [variables]\ngreeting = { default = \"Hello\" }\ntoken = { required = true, secret = true }\n\
         [[trigger.http]]\nroute = \"/cart/...\"\ncomponent = \"cart\"\n\
         [component.cart]\nsource = \"cart.wasm\"\nkey_value_stores = [\"default\"]\n\
         files = [{ source = \"static\", destination = \"/\" }]\n\
         variables = { greeting = \"{{ greeting }}\", token = \"{{ token }}\" }\n",
    )
    .unwrap();
    let rc = dir.path().join("runtime-config.toml");
    std::fs::write(
        &rc,
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://redis.shop.svc:6379\"\n",
    )
    .unwrap();
    let docs = documents(&render_with(
        &spin,
        &[
            "--image",
            "registry.example/shop:1",
            "--runtime-config-file",
            rc.to_str().unwrap(),
        ],
    ));
    let schemas = schemas();
    for doc in &docs {
        let p = problems(&schemas, doc);
        assert!(p.is_empty(), "{p:#?}\n{doc:#}");
    }
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    let template = &service["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"],
        "0"
    );
    let env = template["spec"]["containers"][0]["env"].as_array().unwrap();
    // The required variable from a Secret named after the Service; the one with a default
    // needs nothing.
    let token = env
        .iter()
        .find(|e| e["name"] == "SPIN_VARIABLE_TOKEN")
        .unwrap_or_else(|| panic!("{env:#?}"));
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({ "name": "wasmfn-variables", "key": "token" })
    );
    assert!(
        !env.iter().any(|e| e["name"] == "SPIN_VARIABLE_GREETING"),
        "{env:#?}"
    );
    // Its `files` are gathered at load into /tmp, which the read-only root needs mounted.
    let container = &template["spec"]["containers"][0];
    assert_eq!(
        container["volumeMounts"],
        json!([{ "name": "wasmfn-tmp", "mountPath": "/tmp" }])
    );
    assert_eq!(
        template["spec"]["volumes"],
        json!([{ "name": "wasmfn-tmp", "emptyDir": {} }])
    );
    // The host in the image reads the runtime configuration from where the image keeps it.
    assert!(
        env.contains(
            &json!({ "name": "WASMFN_RUNTIME_CONFIG_FILE", "value": "/app/runtime-config.toml" })
        ),
        "{env:#?}"
    );
}

#[test]
fn a_sqlite_database_keeps_its_service_to_one_pod() {
    let text = format!(
        "[[functions]]\nname = \"orders\"\ncomponent = {:?}\nroutes = [\"/orders\"]\nsqlite_databases = [\"default\"]\n\n\
         [[services]]\nname = \"orders-api\"\nfunctions = [\"orders\"]\n",
        guests::COUNTER
    );
    let manifest = Manifest::parse(Path::new("/m/wasmfn.toml"), &text).unwrap();
    let err = wasmfn::knative::render(&manifest, "registry.example/wasmfn:v1")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keeps its SQLite database `default` in the pod")
            && err.contains("max_scale = 1"),
        "{err}"
    );
    let one_pod = format!("{text}max_scale = 1\n");
    let manifest = Manifest::parse(Path::new("/m/wasmfn.toml"), &one_pod).unwrap();
    let rendered = wasmfn::knative::render(&manifest, "registry.example/wasmfn:v1").unwrap();
    assert!(
        rendered.contains("wasmfn-data"),
        "its data volume: {rendered}"
    );
}
