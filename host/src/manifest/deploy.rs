//! The `[deploy]` table and `[[services]]` of `wasmfn.toml`: how functions are grouped into
//! Knative Services and how those scale and split traffic. Checked here with the rules the
//! Knative webhook would apply, so mistakes surface with a manifest line, not in a cluster.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::limits::duration;
use super::{Ctx, FunctionSpec, Location, ManifestError};

/// Ports Knative reserves for its own components; a user container may not listen there.
pub const RESERVED_PORTS: [u16; 6] = [8012, 8013, 8022, 9090, 9091, 8008];
/// The port the host listens on in the container (Knative sets `PORT` to it).
pub const DEFAULT_PORT: u16 = 8080;
/// The Service name when the manifest has no `[[services]]`.
pub const DEFAULT_SERVICE: &str = "wasmfn";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeploy {
    namespace: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    broker: Option<Spanned<String>>,
    #[serde(default)]
    create_broker: bool,
    delivery: Option<Spanned<super::delivery::RawDelivery>>,
    ingress_namespace: Option<Spanned<String>>,
    monitoring_namespace: Option<Spanned<String>>,
    private_ranges: Option<Vec<Spanned<String>>>,
    kubectl_image: Option<Spanned<String>>,
}

/// Declares a `[[services]]` entry's raw form with the keys a profile may also set, so the
/// two are written once: `$extra` are the fields only that form has.
macro_rules! with_service_settings {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        $vis struct $name {
            $($extra)*
            revision: Option<Spanned<String>>,
            min_scale: Option<u32>,
            max_scale: Option<u32>,
            initial_scale: Option<u32>,
            target: Option<u32>,
            metric: Option<Spanned<String>>,
            window: Option<Spanned<String>>,
            scale_down_delay: Option<Spanned<String>>,
            container_concurrency: Option<Spanned<u32>>,
            class: Option<Spanned<String>>,
            target_utilization: Option<Spanned<i64>>,
            panic_window: Option<Spanned<i64>>,
            panic_threshold: Option<Spanned<i64>>,
            scale_to_zero_retention: Option<Spanned<String>>,
            activation_scale: Option<Spanned<i64>>,
            timeout: Option<Spanned<String>>,
            network_policy: Option<bool>,
            #[serde(default)]
            env: BTreeMap<String, String>,
            #[serde(default)]
            annotations: BTreeMap<String, Spanned<String>>,
            #[serde(default)]
            labels: BTreeMap<String, Spanned<String>>,
            #[serde(default)]
            template_annotations: BTreeMap<String, Spanned<String>>,
            #[serde(default)]
            template_labels: BTreeMap<String, Spanned<String>>,
        }
    };
}

with_service_settings! {
    #[derive(Deserialize, Clone)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawService {
        name: Spanned<String>,
        functions: Option<Vec<Spanned<String>>>,
        #[serde(default)]
        resources: Resources,
        #[serde(default)]
        secrets: Vec<SecretRef>,
        #[serde(default)]
        secret_files: Vec<SecretFiles>,
        #[serde(default)]
        traffic: Vec<Spanned<RawTraffic>>,
        service_account: Option<Spanned<String>>,
        readiness: Option<Spanned<RawProbe>>,
        liveness: Option<Spanned<RawProbe>>,
        #[serde(default)]
        domains: Vec<Spanned<String>>,
        #[serde(default)]
        egress: Vec<Spanned<String>>,
        #[serde(default)]
        scaling_schedule: Vec<Spanned<super::cluster::RawScaling>>,
        #[serde(default)]
        versions_as_revisions: Option<Spanned<bool>>,
    }
}

/// A named set of overrides (`[profiles.<name>]`), chosen with `deploy render --profile`:
/// one manifest for staging and production, or for each region.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProfile {
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    services: BTreeMap<String, Spanned<RawServiceOverride>>,
}

with_service_settings! {
    /// What a profile may change of a `[[services]]` entry: maps are merged key by key,
    /// lists and values replace the entry's.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawServiceOverride {
        resources: Option<Resources>,
        secrets: Option<Vec<SecretRef>>,
        domains: Option<Vec<Spanned<String>>>,
        traffic: Option<Vec<Spanned<RawTraffic>>>,
        egress: Option<Vec<Spanned<String>>>,
        scaling_schedule: Option<Vec<Spanned<super::cluster::RawScaling>>>,
    }
}

impl RawService {
    /// This entry as `o` changes it.
    fn overridden(&self, o: &RawServiceOverride) -> RawService {
        let mut s = self.clone();
        macro_rules! replace {
            ($($field:ident),*) => {$(
                if let Some(v) = &o.$field {
                    s.$field = Some(v.clone());
                }
            )*};
        }
        replace!(
            revision,
            min_scale,
            max_scale,
            initial_scale,
            target,
            metric,
            window,
            scale_down_delay,
            container_concurrency,
            class,
            target_utilization,
            panic_window,
            panic_threshold,
            scale_to_zero_retention,
            activation_scale,
            timeout,
            network_policy
        );
        if let Some(r) = &o.resources {
            s.resources = r.clone();
        }
        s.env.extend(o.env.clone());
        s.annotations.extend(o.annotations.clone());
        s.labels.extend(o.labels.clone());
        s.template_annotations
            .extend(o.template_annotations.clone());
        s.template_labels.extend(o.template_labels.clone());
        if let Some(v) = &o.secrets {
            s.secrets = v.clone();
        }
        if let Some(v) = &o.domains {
            s.domains = v.clone();
        }
        if let Some(v) = &o.traffic {
            s.traffic = v.clone();
        }
        if let Some(v) = &o.egress {
            s.egress = v.clone();
        }
        if let Some(v) = &o.scaling_schedule {
            s.scaling_schedule = v.clone();
        }
        s
    }
}

/// `deploy` and `services` as profile `name` of `profiles` changes them.
pub(crate) fn apply_profile(
    ctx: &Ctx<'_>,
    name: &str,
    profiles: &BTreeMap<String, Spanned<RawProfile>>,
    deploy: &mut Option<Spanned<RawDeploy>>,
    services: &mut [Spanned<RawService>],
) -> Result<(), ManifestError> {
    let Some(profile) = profiles.get(name) else {
        let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
        return Err(ManifestError::Invalid {
            at: ctx.location(0),
            message: format!(
                "there is no profile `{name}`; the manifest has {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        });
    };
    let p = profile.get_ref();
    if let Some(ns) = &p.namespace {
        match deploy {
            Some(d) => d.get_mut().namespace = Some(ns.clone()),
            None => {
                return Err(ctx.error(
                    ns.span(),
                    "a profile's namespace replaces [deploy] namespace; add a [deploy] table"
                        .to_string(),
                ));
            }
        }
    }
    for (service, o) in &p.services {
        let Some(entry) = services
            .iter_mut()
            .find(|s| s.get_ref().name.get_ref() == service)
        else {
            return Err(ctx.error(
                o.span(),
                format!("profile `{name}` changes service `{service}`, which [[services]] does not define"),
            ));
        };
        *entry.get_mut() = entry.get_ref().overridden(o.get_ref());
    }
    Ok(())
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    initial_delay: Option<Spanned<String>>,
    period: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    failure_threshold: Option<Spanned<i64>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawTraffic {
    revision: Option<String>,
    #[serde(default)]
    latest: bool,
    percent: u32,
    tag: Option<String>,
}

/// Container resources, in Kubernetes quantities (`"100m"`, `"256Mi"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    /// The most the container may use.
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

/// An environment variable taken from a Kubernetes Secret.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// The variable's name in the container.
    pub env: String,
    /// The Secret's name.
    pub secret: String,
    /// The key inside the Secret.
    pub key: String,
}

/// Secret files in a directory, for `{ file = ... }` variables: a Secret mounted there
/// (each key a file), or files an injector writes there, such as HashiCorp Vault's agent
/// (`/vault/secrets`, from the pod's `vault.hashicorp.com/*` annotations).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFiles {
    /// The Secret's name.
    pub secret: Option<String>,
    /// What writes the files instead of a Secret (e.g. `"vault"`); render mounts nothing.
    pub injected_by: Option<String>,
    /// The directory.
    pub path: String,
}

/// Where Knative deploys the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySpec {
    /// The namespace of every object; none means the one `kubectl` uses.
    pub namespace: Option<String>,
    /// The container port.
    pub port: u16,
    /// The Broker Triggers subscribe to and emitted events go to.
    pub broker: String,
    /// Whether to render the Broker too.
    pub create_broker: bool,
    /// The Broker's default delivery (with `create_broker`).
    pub delivery: Option<super::delivery::Delivery>,
    /// Where the Services' traffic comes from, for their NetworkPolicies.
    pub network: super::cluster::Network,
    /// The image the scaling CronJobs run `kubectl` in.
    pub kubectl_image: String,
    /// The Knative Services.
    pub services: Vec<ServiceSpec>,
}

/// One Knative Service: a host image serving some of the manifest's functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The Service name.
    pub name: String,
    /// Indexes into the manifest's functions.
    pub functions: Vec<usize>,
    /// The revision name of the template (`<service>-<suffix>`), for traffic to name it.
    pub revision: Option<String>,
    /// Autoscaling annotations, by key without the `autoscaling.knative.dev/` prefix.
    pub autoscaling: BTreeMap<&'static str, String>,
    /// In-flight requests per pod (0 = unlimited).
    pub container_concurrency: Option<u32>,
    /// Container resources.
    pub resources: Resources,
    /// Plain environment variables.
    pub env: BTreeMap<String, String>,
    /// Environment variables from Secrets.
    pub secrets: Vec<SecretRef>,
    /// Secrets mounted as files.
    pub secret_files: Vec<SecretFiles>,
    /// Where the manifest declares it (line 1 for the default Service).
    pub at: Location,
    /// Knative's request timeout; `None`: the slowest function's.
    pub timeout: Option<std::time::Duration>,
    /// Annotations and labels on the Service.
    pub annotations: BTreeMap<String, String>,
    /// Labels on the Service.
    pub labels: BTreeMap<String, String>,
    /// Annotations on the revision template (besides autoscaling's).
    pub template_annotations: BTreeMap<String, String>,
    /// Labels on the revision template.
    pub template_labels: BTreeMap<String, String>,
    /// The pod's service account.
    pub service_account: Option<String>,
    /// The readiness probe's timing.
    pub readiness: Probe,
    /// The liveness probe's timing.
    pub liveness: Probe,
    /// Custom domains mapped to the Service (DomainMapping objects).
    pub domains: Vec<String>,
    /// The traffic split; empty means all traffic to the latest revision.
    pub traffic: Vec<Traffic>,
    /// Whether a NetworkPolicy limits its pods to what its functions are granted.
    pub network_policy: bool,
    /// Destinations beyond its functions' grants (`egress`), for the NetworkPolicy.
    pub egress: Vec<super::hosts::AllowedHost>,
    /// When its minimum scale changes (`scaling_schedule`).
    pub scaling: Vec<super::cluster::ScaleSchedule>,
    /// With `versions_as_revisions`: the function (an index into the manifest's functions)
    /// whose versions are this Service's revisions, one version per revision.
    pub versions_as_revisions: Option<usize>,
    /// With `versions_as_revisions`: the version this render's template serves (`deploy
    /// render --current-version`); `None`: the first listed.
    pub current_version: Option<String>,
}

/// A probe's timing, in whole seconds; unset values are Kubernetes' defaults except the
/// period, which is 1 s (the host answers probes in microseconds, and a cold start should
/// be seen ready as soon as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// Before the first probe.
    pub initial_delay_seconds: Option<u32>,
    /// Between probes.
    pub period_seconds: Option<u32>,
    /// For one probe.
    pub timeout_seconds: Option<u32>,
    /// Failures in a row before the probe fails.
    pub failure_threshold: Option<u32>,
}

/// One entry of a traffic split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// A named revision, or `None` for the latest ready one.
    pub revision: Option<String>,
    /// Share of requests.
    pub percent: u32,
    /// A tag, which also gets its own route `<tag>-<service>`.
    pub tag: Option<String>,
}

pub(crate) fn resolve(
    ctx: &Ctx<'_>,
    deploy: Option<&Spanned<RawDeploy>>,
    services: &[Spanned<RawService>],
    functions: &[FunctionSpec],
) -> Result<DeploySpec, ManifestError> {
    let mut spec = layout(ctx, deploy, services, functions)?;
    // The default Service has no line of its own: what is said of it points at line 1.
    for (i, service) in spec.services.iter_mut().enumerate() {
        service.at = ctx.location(services.get(i).map_or(0, |s| s.span().start));
    }
    Ok(spec)
}

fn layout(
    ctx: &Ctx<'_>,
    deploy: Option<&Spanned<RawDeploy>>,
    services: &[Spanned<RawService>],
    functions: &[FunctionSpec],
) -> Result<DeploySpec, ManifestError> {
    let mut spec = deploy_table(ctx, deploy)?;
    check_dead_letters(ctx, deploy, spec.delivery.as_ref(), functions)?;
    if services.is_empty() {
        spec.services.push(default_service(ctx, functions.len()));
        return Ok(spec);
    }
    let mut owner: Vec<Option<String>> = vec![None; functions.len()];
    for raw in services {
        let service = service(ctx, raw, functions, &mut owner, &spec.services)?;
        spec.services.push(service);
    }
    if let Some(i) = owner.iter().position(Option::is_none) {
        return Err(ctx.error(
            services[0].span(),
            format!(
                "function `{}` is in no service; list it in one service's `functions`",
                functions[i].name
            ),
        ));
    }
    Ok(spec)
}

/// `[deploy]`: namespace, port, Broker and its delivery.
fn deploy_table(
    ctx: &Ctx<'_>,
    deploy: Option<&Spanned<RawDeploy>>,
) -> Result<DeploySpec, ManifestError> {
    let mut spec = DeploySpec {
        namespace: None,
        port: DEFAULT_PORT,
        broker: "default".to_string(),
        create_broker: false,
        delivery: None,
        network: super::cluster::Network::default(),
        kubectl_image: super::cluster::DEFAULT_KUBECTL_IMAGE.to_string(),
        services: Vec::new(),
    };
    let Some(raw) = deploy else {
        return Ok(spec);
    };
    let d = raw.get_ref();
    if let Some(ns) = &d.namespace {
        dns_label(ns.get_ref(), "namespace").map_err(|e| ctx.error(ns.span(), e.to_string()))?;
        spec.namespace = Some(ns.get_ref().clone());
    }
    if let Some(port) = &d.port {
        let p = *port.get_ref();
        if RESERVED_PORTS.contains(&p) || p == 0 {
            return Err(ctx.error(
                port.span(),
                format!("port {p} is reserved by Knative (8012, 8013, 8022, 9090, 9091, 8008) or invalid; 8080 is the usual choice"),
            ));
        }
        spec.port = p;
    }
    if let Some(b) = &d.broker {
        dns_label(b.get_ref(), "broker").map_err(|e| ctx.error(b.span(), e.to_string()))?;
        spec.broker = b.get_ref().clone();
    }
    spec.create_broker = d.create_broker;
    for (value, what, field) in [
        (&d.ingress_namespace, "ingress_namespace", 0),
        (&d.monitoring_namespace, "monitoring_namespace", 1),
    ] {
        if let Some(ns) = value {
            dns_label(ns.get_ref(), what).map_err(|e| ctx.error(ns.span(), e.to_string()))?;
            match field {
                0 => spec.network.ingress_namespace = ns.get_ref().clone(),
                _ => spec.network.monitoring_namespace = Some(ns.get_ref().clone()),
            }
        }
    }
    if let Some(ranges) = &d.private_ranges {
        spec.network.private_ranges = ranges
            .iter()
            .map(|r| {
                super::cluster::cidr(r.get_ref())
                    .map(|()| r.get_ref().clone())
                    .map_err(|e| ctx.error(r.span(), format!("`private_ranges`: {e}")))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(image) = &d.kubectl_image {
        if image.get_ref().trim().is_empty() || image.get_ref().contains(char::is_whitespace) {
            return Err(ctx.error(
                image.span(),
                format!("`kubectl_image` {:?} is not an image reference such as \"bitnami/kubectl:1.33\"", image.get_ref()),
            ));
        }
        spec.kubectl_image = image.get_ref().clone();
    }
    if let Some(delivery) = &d.delivery {
        if !d.create_broker {
            return Err(ctx.error(
                delivery.span(),
                "`deploy.delivery` is the Broker's, and this manifest does not create the Broker; set create_broker = true, or give each function its own `delivery`".to_string(),
            ));
        }
        spec.delivery = Some(super::delivery::parse(ctx, delivery, "deploy.delivery")?);
    }
    Ok(spec)
}

/// A dead letter may be a function of this manifest: one that takes events.
fn check_dead_letters(
    ctx: &Ctx<'_>,
    deploy: Option<&Spanned<RawDeploy>>,
    broker: Option<&super::delivery::Delivery>,
    functions: &[FunctionSpec],
) -> Result<(), ManifestError> {
    let deliveries = broker
        .map(|d| (d, ctx.location(deploy.map_or(0, |r| r.span().start))))
        .into_iter()
        .chain(
            functions
                .iter()
                .filter_map(|f| f.delivery.as_ref().map(|d| (d, f.component_at.clone()))),
        );
    for (delivery, at) in deliveries {
        if let Some(super::delivery::DeadLetter::Function(name)) = &delivery.dead_letter
            && !functions
                .iter()
                .any(|f| &f.name == name && !f.events.is_empty())
        {
            return Err(ManifestError::Invalid {
                at,
                message: format!(
                    "the dead letter goes to function `{name}`, but no function of that name takes events"
                ),
            });
        }
    }
    Ok(())
}

/// The one Service of a manifest without `[[services]]`: every function, scaled to zero.
fn default_service(ctx: &Ctx<'_>, functions: usize) -> ServiceSpec {
    ServiceSpec {
        name: DEFAULT_SERVICE.to_string(),
        functions: (0..functions).collect(),
        revision: None,
        autoscaling: BTreeMap::from([("min-scale", "0".to_string())]),
        container_concurrency: None,
        resources: Resources::default(),
        env: BTreeMap::new(),
        secrets: Vec::new(),
        secret_files: Vec::new(),
        at: ctx.location(0),
        traffic: Vec::new(),
        timeout: None,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        template_annotations: BTreeMap::new(),
        template_labels: BTreeMap::new(),
        service_account: None,
        readiness: Probe::default(),
        liveness: Probe::default(),
        domains: Vec::new(),
        network_policy: true,
        egress: Vec::new(),
        scaling: Vec::new(),
        versions_as_revisions: None,
        current_version: None,
    }
}

/// One `[[services]]` entry. `owner` says which service has claimed each function so far;
/// `earlier` are the entries before this one.
fn service(
    ctx: &Ctx<'_>,
    raw: &Spanned<RawService>,
    functions: &[FunctionSpec],
    owner: &mut [Option<String>],
    earlier: &[ServiceSpec],
) -> Result<ServiceSpec, ManifestError> {
    let s = raw.get_ref();
    let name = s.name.get_ref().clone();
    dns_label(&name, "service name").map_err(|e| ctx.error(s.name.span(), e.to_string()))?;
    if earlier.iter().any(|o| o.name == name) {
        return Err(ctx.error(s.name.span(), format!("service `{name}` is defined twice")));
    }
    let members = members(ctx, raw, &name, functions, owner)?;
    for key in s.env.keys() {
        if key.is_empty() || key.starts_with("K_") || key == "PORT" {
            return Err(ctx.error(
                raw.span(),
                format!("env {key:?} is empty or reserved by Knative (PORT, K_*)"),
            ));
        }
    }
    if let Some(bad) = s
        .secret_files
        .iter()
        .find(|f| f.secret.is_some() == f.injected_by.is_some() || !f.path.starts_with('/'))
    {
        return Err(ctx.error(
            raw.span(),
            format!("service `{name}`: each `secret_files` entry takes an absolute `path` and one of `secret` (a Secret mounted there) or `injected_by` (what writes the files, e.g. \"vault\"); got {bad:?}"),
        ));
    }
    let service_account = s
        .service_account
        .as_ref()
        .map(|a| {
            dns_label(a.get_ref(), "service_account")
                .map(|()| a.get_ref().clone())
                .map_err(|e| ctx.error(a.span(), e.to_string()))
        })
        .transpose()?;
    let traffic = traffic(ctx, raw, &name)?;
    let revision = revision(ctx, s, &name)?;
    let scaling = super::cluster::scaling(ctx, &name, &s.scaling_schedule, s.max_scale)?;
    if let Some(first) = s.scaling_schedule.first() {
        // The CronJob patches the template, which makes a new revision: one whose name is
        // fixed cannot be made twice, and traffic pinned to named revisions never reaches it.
        if revision.is_some()
            || s.versions_as_revisions
                .as_ref()
                .is_some_and(|v| *v.get_ref())
        {
            return Err(ctx.error(
                first.span(),
                format!("service `{name}`'s scaling schedule patches its template, which makes a new revision each time; that cannot be done with a fixed revision name (`revision`, `versions_as_revisions`): remove one or the other"),
            ));
        }
        if traffic.iter().any(|t| t.revision.is_some()) {
            return Err(ctx.error(
                first.span(),
                format!("service `{name}`'s scaling schedule patches its template, making a new revision, but its `traffic` pins named revisions, which the new one would not serve; schedule a service whose traffic goes to the latest revision"),
            ));
        }
    }
    let versions_as_revisions =
        versions_as_revisions(ctx, s, &name, &members, functions, &revision, &traffic)?;
    Ok(ServiceSpec {
        revision,
        autoscaling: autoscaling(ctx, raw, &name)?,
        container_concurrency: container_concurrency(ctx, s)?,
        resources: s.resources.clone(),
        env: s.env.clone(),
        secrets: s.secrets.clone(),
        secret_files: s.secret_files.clone(),
        at: ctx.location(0),
        traffic,
        timeout: service_timeout(ctx, s, &name, &members, functions)?,
        annotations: metadata(ctx, &s.annotations, "annotation")?,
        labels: metadata(ctx, &s.labels, "label")?,
        template_annotations: metadata(ctx, &s.template_annotations, "annotation")?,
        template_labels: metadata(ctx, &s.template_labels, "label")?,
        service_account,
        readiness: probe(ctx, &s.readiness)?,
        liveness: probe(ctx, &s.liveness)?,
        domains: domains(ctx, s, earlier)?,
        network_policy: s.network_policy.unwrap_or(true),
        egress: super::cluster::egress(ctx, &s.egress)?,
        scaling,
        versions_as_revisions,
        current_version: None,
        name,
        functions: members,
    })
}

/// `versions_as_revisions = true`: the one function of the Service with `versions` gives
/// the revisions, so the Service names neither its revision nor its traffic itself.
fn versions_as_revisions(
    ctx: &Ctx<'_>,
    s: &RawService,
    name: &str,
    members: &[usize],
    functions: &[FunctionSpec],
    revision: &Option<String>,
    traffic: &[Traffic],
) -> Result<Option<usize>, ManifestError> {
    let Some(flag) = s.versions_as_revisions.as_ref().filter(|f| *f.get_ref()) else {
        return Ok(None);
    };
    let versioned: Vec<usize> = members
        .iter()
        .copied()
        .filter(|&i| functions[i].versions.is_some())
        .collect();
    let [function] = versioned[..] else {
        return Err(ctx.error(
            flag.span(),
            format!("service `{name}` has versions_as_revisions, so exactly one of its functions needs `versions` (it has {})", versioned.len()),
        ));
    };
    if revision.is_some() || !traffic.is_empty() {
        return Err(ctx.error(
            flag.span(),
            format!("service `{name}` takes its revision and traffic from function `{}`'s versions (versions_as_revisions); remove `revision` and `traffic`", functions[function].name),
        ));
    }
    let versions = functions[function].versions.as_ref().expect("filtered");
    for v in &versions.list {
        let revision = format!("{name}-{}", v.name);
        dns_label(&revision, "revision").map_err(|e| ctx.error(flag.span(), e.to_string()))?;
    }
    Ok(Some(function))
}

/// The functions a service serves, each claimed in `owner` (a function has one service).
fn members(
    ctx: &Ctx<'_>,
    raw: &Spanned<RawService>,
    name: &str,
    functions: &[FunctionSpec],
    owner: &mut [Option<String>],
) -> Result<Vec<usize>, ManifestError> {
    let Some(list) = &raw.get_ref().functions else {
        return Err(ctx.error(
            raw.span(),
            format!("service `{name}` needs `functions = [...]`, the functions it serves"),
        ));
    };
    let mut members = Vec::new();
    for f in list {
        let i = super::function_index(ctx, f, functions)?;
        if let Some(other) = &owner[i] {
            return Err(ctx.error(
                f.span(),
                format!("function `{}` is already in service `{other}`; a function belongs to one service", f.get_ref()),
            ));
        }
        owner[i] = Some(name.to_string());
        members.push(i);
    }
    Ok(members)
}

fn revision(ctx: &Ctx<'_>, s: &RawService, name: &str) -> Result<Option<String>, ManifestError> {
    let Some(r) = &s.revision else {
        return Ok(None);
    };
    let v = r.get_ref();
    if !v.starts_with(&format!("{name}-")) {
        return Err(ctx.error(
            r.span(),
            format!("revision {v:?} must start with the service name and a dash (`{name}-...`), as Knative requires"),
        ));
    }
    dns_label(v, "revision").map_err(|e| ctx.error(r.span(), e.to_string()))?;
    Ok(Some(v.clone()))
}

/// The `autoscaling.knative.dev/` annotations, by key without the prefix.
type Autoscaling = BTreeMap<&'static str, String>;

fn autoscaling(
    ctx: &Ctx<'_>,
    raw: &Spanned<RawService>,
    name: &str,
) -> Result<Autoscaling, ManifestError> {
    let mut autoscaling = scale_bounds(ctx, raw, name)?;
    scale_windows(ctx, raw.get_ref(), &mut autoscaling)?;
    scale_class(ctx, raw, name, &mut autoscaling)?;
    scale_percentages(ctx, raw.get_ref(), &mut autoscaling)?;
    Ok(autoscaling)
}

/// `min_scale`, `max_scale`, `initial_scale` and `target`.
fn scale_bounds(
    ctx: &Ctx<'_>,
    raw: &Spanned<RawService>,
    name: &str,
) -> Result<Autoscaling, ManifestError> {
    let s = raw.get_ref();
    let mut autoscaling = BTreeMap::new();
    let min = s.min_scale.unwrap_or(0);
    autoscaling.insert("min-scale", min.to_string());
    if let Some(max) = s.max_scale {
        if max != 0 && max < min {
            return Err(ctx.error(
                raw.span(),
                format!("service `{name}`: max_scale {max} is below min_scale {min}"),
            ));
        }
        autoscaling.insert("max-scale", max.to_string());
    }
    if let Some(initial) = s.initial_scale {
        autoscaling.insert("initial-scale", initial.to_string());
    }
    if let Some(target) = s.target {
        if target == 0 {
            return Err(ctx.error(
                raw.span(),
                format!("service `{name}`: target must be at least 1"),
            ));
        }
        autoscaling.insert("target", target.to_string());
    }
    Ok(autoscaling)
}

/// `window`, `scale_down_delay` and `scale_to_zero_retention`, as Go durations.
fn scale_windows(
    ctx: &Ctx<'_>,
    s: &RawService,
    autoscaling: &mut Autoscaling,
) -> Result<(), ManifestError> {
    if let Some(window) = &s.window {
        let d = duration(ctx, "window", window)?;
        if !(6..=3600).contains(&d.as_secs()) || d.subsec_nanos() != 0 {
            return Err(ctx.error(
                window.span(),
                format!(
                    "window must be whole seconds between 6s and 1h, got {:?}",
                    window.get_ref()
                ),
            ));
        }
        autoscaling.insert("window", go_duration(window, d));
    }
    for (key, annotation, value) in [
        ("scale_down_delay", "scale-down-delay", &s.scale_down_delay),
        (
            "scale_to_zero_retention",
            "scale-to-zero-pod-retention-period",
            &s.scale_to_zero_retention,
        ),
    ] {
        if let Some(v) = value {
            let d = duration(ctx, key, v)?;
            if d.as_secs() > 3600 {
                return Err(ctx.error(v.span(), format!("{key} may be at most 1h")));
            }
            autoscaling.insert(annotation, go_duration(v, d));
        }
    }
    Ok(())
}

/// `class` and the `metric` it allows.
fn scale_class(
    ctx: &Ctx<'_>,
    raw: &Spanned<RawService>,
    name: &str,
    autoscaling: &mut Autoscaling,
) -> Result<(), ManifestError> {
    let s = raw.get_ref();
    let class = match s.class.as_ref().map(|c| (c.get_ref().as_str(), c.span())) {
        None => None,
        Some(("kpa", _)) => Some("kpa.autoscaling.knative.dev"),
        Some(("hpa", _)) => Some("hpa.autoscaling.knative.dev"),
        Some((other, span)) => {
            return Err(ctx.error(
                span,
                format!("class must be \"kpa\" (Knative's autoscaler) or \"hpa\" (Kubernetes'), got {other:?}"),
            ));
        }
    };
    if let Some(class) = class {
        autoscaling.insert("class", class.to_string());
    }
    let hpa = class == Some("hpa.autoscaling.knative.dev");
    let Some(metric) = &s.metric else {
        if hpa {
            return Err(ctx.error(
                s.class.as_ref().map_or(raw.span(), |c| c.span()),
                format!("service `{name}` scales with the hpa class, which needs metric = \"cpu\" or \"memory\" and a target"),
            ));
        }
        return Ok(());
    };
    let allowed: &[&str] = if hpa {
        &["cpu", "memory"]
    } else {
        &["concurrency", "rps"]
    };
    if !allowed.contains(&metric.get_ref().as_str()) {
        return Err(ctx.error(
            metric.span(),
            format!(
                "with class {:?} the metric is \"{}\" or \"{}\", got {:?}",
                if hpa { "hpa" } else { "kpa" },
                allowed[0],
                allowed[1],
                metric.get_ref()
            ),
        ));
    }
    autoscaling.insert("metric", metric.get_ref().clone());
    Ok(())
}

/// The autoscaler's tuning numbers, each within Knative's range.
fn scale_percentages(
    ctx: &Ctx<'_>,
    s: &RawService,
    autoscaling: &mut Autoscaling,
) -> Result<(), ManifestError> {
    let tuning = [
        (
            "target_utilization",
            "target-utilization-percentage",
            &s.target_utilization,
            1..=100,
        ),
        (
            "panic_window",
            "panic-window-percentage",
            &s.panic_window,
            1..=100,
        ),
        (
            "panic_threshold",
            "panic-threshold-percentage",
            &s.panic_threshold,
            110..=1000,
        ),
        (
            "activation_scale",
            "activation-scale",
            &s.activation_scale,
            1..=1000,
        ),
    ];
    for (key, annotation, value, range) in tuning {
        let Some(v) = value else { continue };
        if !range.contains(v.get_ref()) {
            return Err(ctx.error(
                v.span(),
                format!(
                    "`{key}` must be {} to {}, got {}",
                    range.start(),
                    range.end(),
                    v.get_ref()
                ),
            ));
        }
        autoscaling.insert(annotation, v.get_ref().to_string());
    }
    Ok(())
}

fn container_concurrency(ctx: &Ctx<'_>, s: &RawService) -> Result<Option<u32>, ManifestError> {
    match &s.container_concurrency {
        Some(c) if *c.get_ref() > 1000 => Err(ctx.error(
            c.span(),
            format!(
                "container_concurrency must be 0 (unlimited) to 1000, got {}",
                c.get_ref()
            ),
        )),
        Some(c) => Ok(Some(*c.get_ref())),
        None => Ok(None),
    }
}

/// Knative's request timeout, which must not cut off the slowest of `members`.
fn service_timeout(
    ctx: &Ctx<'_>,
    s: &RawService,
    name: &str,
    members: &[usize],
    functions: &[FunctionSpec],
) -> Result<Option<std::time::Duration>, ManifestError> {
    let Some(t) = &s.timeout else {
        return Ok(None);
    };
    let d = super::limits::parse_duration(
        ctx,
        "timeout",
        t,
        super::MAX_TIMEOUT,
        "600s (Knative's limit)",
    )?;
    let slowest = members
        .iter()
        .map(|&i| (functions[i].timeout, &functions[i].name))
        .max();
    if let Some((longest, function)) = slowest
        && longest > d
    {
        return Err(ctx.error(
            t.span(),
            format!("service `{name}`'s timeout {:?} would cut off function `{function}`, whose timeout is {longest:?}", t.get_ref()),
        ));
    }
    Ok(Some(d))
}

/// Annotations or labels, whose keys must be Kubernetes qualified names.
fn metadata(
    ctx: &Ctx<'_>,
    map: &BTreeMap<String, Spanned<String>>,
    what: &str,
) -> Result<BTreeMap<String, String>, ManifestError> {
    map.iter()
        .map(|(k, v)| {
            qualified_name(k).map_err(|e| ctx.error(v.span(), format!("{what} {k:?}: {e}")))?;
            Ok((k.clone(), v.get_ref().clone()))
        })
        .collect()
}

fn probe(ctx: &Ctx<'_>, p: &Option<Spanned<RawProbe>>) -> Result<Probe, ManifestError> {
    let Some(p) = p else {
        return Ok(Probe::default());
    };
    let p = p.get_ref();
    let seconds = |key: &str, v: &Option<Spanned<String>>, min: u64| {
        let Some(v) = v else { return Ok(None) };
        let d = duration(ctx, key, v)?;
        if d.subsec_nanos() != 0 || d.as_secs() < min || d.as_secs() > 3600 {
            return Err(ctx.error(
                v.span(),
                format!(
                    "`{key}` must be whole seconds from {min}s to 1h, got {:?}",
                    v.get_ref()
                ),
            ));
        }
        Ok(Some(d.as_secs() as u32))
    };
    let failure_threshold = p
        .failure_threshold
        .as_ref()
        .map(|n| match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=100).contains(&v) => Ok(v),
            _ => Err(ctx.error(
                n.span(),
                format!("`failure_threshold` must be 1 to 100, got {}", n.get_ref()),
            )),
        })
        .transpose()?;
    Ok(Probe {
        initial_delay_seconds: seconds("initial_delay", &p.initial_delay, 0)?,
        period_seconds: seconds("period", &p.period, 1)?,
        timeout_seconds: seconds("timeout", &p.timeout, 1)?,
        failure_threshold,
    })
}

/// Custom domains, each mapped once across all services.
fn domains(
    ctx: &Ctx<'_>,
    s: &RawService,
    earlier: &[ServiceSpec],
) -> Result<Vec<String>, ManifestError> {
    let mut domains = Vec::new();
    for d in &s.domains {
        let v = d.get_ref();
        let ok = v.len() <= 253 && v.contains('.') && v.split('.').all(dns_label_of_domain);
        if !ok {
            return Err(ctx.error(
                d.span(),
                format!("domain {v:?} is not a lower-case DNS name such as \"api.example.com\""),
            ));
        }
        if earlier.iter().any(|o| o.domains.contains(v)) || domains.contains(v) {
            return Err(ctx.error(d.span(), format!("domain {v:?} is mapped twice")));
        }
        domains.push(v.clone());
    }
    Ok(domains)
}

fn traffic(
    ctx: &Ctx<'_>,
    raw: &Spanned<RawService>,
    name: &str,
) -> Result<Vec<Traffic>, ManifestError> {
    let s = raw.get_ref();
    let mut traffic = Vec::new();
    for t in &s.traffic {
        let tr = t.get_ref();
        if tr.latest == tr.revision.is_some() {
            return Err(ctx.error(
                t.span(),
                "a traffic entry names either `revision` or `latest = true`".to_string(),
            ));
        }
        traffic.push(Traffic {
            revision: tr.revision.clone(),
            percent: tr.percent,
            tag: tr.tag.clone(),
        });
        // Entry by entry, so an error points at the entry's line.
        check_traffic(name, &traffic, false).map_err(|e| ctx.error(t.span(), e.to_string()))?;
    }
    check_traffic(name, &traffic, true).map_err(|e| {
        ctx.error(
            s.traffic.first().map_or(raw.span(), |t| t.span()),
            e.to_string(),
        )
    })?;
    Ok(traffic)
}

/// A traffic split Knative would refuse.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// A percent over 100.
    #[error("percent must be 0 to 100, got {0}")]
    Percent(u32),
    /// A revision or tag that is not a DNS label.
    #[error(transparent)]
    Name(#[from] NotADnsLabel),
    /// Two entries with one tag.
    #[error("tag `{0}` is used twice")]
    DuplicateTag(String),
    /// A tag whose route name would be too long.
    #[error("tag route `{tag}-{service}` would be longer than 63 characters")]
    TagTooLong {
        /// The tag.
        tag: String,
        /// The service.
        service: String,
    },
    /// Percents that do not add up to 100.
    #[error("service `{service}`: traffic percents add up to {total}, not 100")]
    Total {
        /// The service.
        service: String,
        /// What they add up to.
        total: u32,
    },
    /// A `--traffic` entry that is not `REVISION=PERCENT[:TAG]`.
    #[error("traffic entry {0:?} must look like REVISION=PERCENT[:TAG] or @latest=PERCENT[:TAG]")]
    Syntax(String),
    /// A `--traffic` entry whose percent is not a number.
    #[error("traffic entry {entry:?}: {percent:?} is not a percent")]
    NotAPercent {
        /// The entry.
        entry: String,
        /// What stood where the percent goes.
        percent: String,
    },
}

/// A name Knative requires to be a DNS-1123 label.
#[derive(Debug, thiserror::Error)]
#[error(
    "{what} {value:?} must be 1-63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'"
)]
pub struct NotADnsLabel {
    what: &'static str,
    value: String,
}

/// Knative's rules for a traffic block: percents 0..=100 adding up to 100 (when `complete`),
/// tags that are DNS labels, unique, and short enough for their `<tag>-<service>` route.
pub fn check_traffic(
    service: &str,
    traffic: &[Traffic],
    complete: bool,
) -> Result<(), TrafficError> {
    let mut tags: Vec<&str> = Vec::new();
    for t in traffic {
        if t.percent > 100 {
            return Err(TrafficError::Percent(t.percent));
        }
        if let Some(r) = &t.revision {
            dns_label(r, "revision")?;
        }
        if let Some(tag) = &t.tag {
            dns_label(tag, "tag")?;
            if tags.contains(&tag.as_str()) {
                return Err(TrafficError::DuplicateTag(tag.clone()));
            }
            if tag.len() + 1 + service.len() > 63 {
                return Err(TrafficError::TagTooLong {
                    tag: tag.clone(),
                    service: service.to_string(),
                });
            }
            tags.push(tag);
        }
    }
    let total: u32 = traffic.iter().map(|t| t.percent).sum();
    if complete && !traffic.is_empty() && total != 100 {
        return Err(TrafficError::Total {
            service: service.to_string(),
            total,
        });
    }
    Ok(())
}

/// Parses `--traffic` entries: `REVISION=PERCENT[:TAG]`, with `@latest` for the latest
/// ready revision, e.g. `users-api-stable=90:stable,@latest=10:canary`.
pub fn parse_traffic(service: &str, text: &str) -> Result<Vec<Traffic>, TrafficError> {
    let traffic = text
        .split(',')
        .map(|entry| {
            let (target, rest) = entry
                .trim()
                .split_once('=')
                .ok_or_else(|| TrafficError::Syntax(entry.to_string()))?;
            let (percent, tag) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t.to_string())),
                None => (rest, None),
            };
            let percent = percent.parse().map_err(|_| TrafficError::NotAPercent {
                entry: entry.to_string(),
                percent: percent.to_string(),
            })?;
            let revision = (target != "@latest").then(|| target.to_string());
            Ok(Traffic {
                revision,
                percent,
                tag,
            })
        })
        .collect::<Result<Vec<_>, TrafficError>>()?;
    check_traffic(service, &traffic, true)?;
    Ok(traffic)
}

/// A DNS-1123 label, which Knative requires of names: 1-63 of a-z 0-9 '-', starting with a
/// letter and not ending with '-'.
fn dns_label(v: &str, what: &'static str) -> Result<(), NotADnsLabel> {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.as_bytes()[0].is_ascii_lowercase()
        && !v.ends_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NotADnsLabel {
            what,
            value: v.to_string(),
        })
    }
}

/// A duration for a Knative annotation, which Go parses: as written when Go reads it the
/// same way (`30s`, `5m`), else in whole seconds.
fn go_duration(text: &Spanned<String>, d: std::time::Duration) -> String {
    let t = text.get_ref().trim();
    let digits = t.trim_end_matches(['s', 'm', 'h']);
    let unit = &t[digits.len()..];
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && ["s", "m", "h"].contains(&unit)
    {
        t.to_string()
    } else {
        format!("{}s", d.as_secs())
    }
}

/// A Kubernetes qualified name (annotation and label keys): an optional DNS prefix and
/// `/`, then 1-63 of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    let prefix_ok = prefix
        .is_none_or(|p| !p.is_empty() && p.len() <= 253 && p.split('.').all(dns_label_of_domain));
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err("is not a Kubernetes key (an optional DNS prefix and '/', then 1-63 letters, digits, '-', '_' or '.')".to_string())
    }
}

/// One label of a DNS name: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'.
fn dns_label_of_domain(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
