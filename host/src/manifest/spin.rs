//! A Spin application manifest (`spin.toml`, manifest version 2), read into the same raw
//! form as a `wasmfn.toml`, so one validation and one host serve either. Spans stay those of
//! the Spin file: every error names its line.
//!
//! What maps: each component that an HTTP trigger routes to is a function named by its
//! component id (an inline component as Spin names it: `<trigger id>-component`, or
//! `http-trigger<n>-component` for the n-th trigger without an id); its routes are
//! the triggers' routes in Spin's syntax (exact, or `/...` for a path and everything below
//! it; `{ private = true }` for one reached only from other components); `source`,
//! `allowed_outbound_hosts`, `key_value_stores`, `environment` and `build` carry over as
//! they are; component `variables` are templates over the application's `[variables]`,
//! each read from `SPIN_VARIABLE_<NAME>` as Spin's environment provider reads them.
//! Everything else Spin defines is refused where it is written, with why.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::variables::{TemplatePart, Variable};
use super::{Ctx, ManifestError, RawBuild, RawFunction, RawManifest};

/// Whether `text` is a Spin manifest: it sets `spin_manifest_version` at the top level,
/// which in TOML is before the first table header. Read by lines, not parsed: every
/// manifest passes here at start, and one of ten thousand functions should not be parsed
/// twice.
pub(super) fn is_spin(text: &str) -> bool {
    text.lines()
        .map(str::trim_start)
        .take_while(|line| !line.starts_with('['))
        .any(|line| {
            line.strip_prefix("spin_manifest_version")
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpin {
    spin_manifest_version: Spanned<toml::Value>,
    application: Spanned<RawApplication>,
    #[serde(default)]
    variables: BTreeMap<Spanned<String>, Spanned<RawAppVariable>>,
    #[serde(default)]
    trigger: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<RawTrigger>>>>,
    #[serde(default)]
    component: BTreeMap<Spanned<String>, Spanned<RawComponent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    /// Required by Spin; the functions are named by their components.
    #[serde(rename = "name")]
    _name: String,
    #[serde(default, rename = "version")]
    _version: Option<String>,
    #[serde(default, rename = "description")]
    _description: Option<String>,
    #[serde(default, rename = "authors")]
    _authors: Vec<String>,
    trigger: Option<Spanned<toml::Value>>,
    /// For tools, not for the runtime.
    #[serde(default, rename = "tool")]
    _tool: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAppVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    /// Spin keeps a secret out of its logs; wasmfn never logs a resolved value at all.
    #[serde(default, rename = "secret")]
    _secret: bool,
    #[serde(default, rename = "description")]
    _description: Option<String>,
}

/// One trigger entry; only `http` ones are served, so the HTTP keys are the ones known.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    route: Option<Spanned<toml::Value>>,
    component: Option<Spanned<ComponentRef>>,
    executor: Option<Spanned<toml::Value>>,
    #[serde(default)]
    id: Option<String>,
}

/// A trigger's `component`: the id of a `[component.<id>]`, or the component itself.
enum ComponentRef {
    Id(String),
    Inline(Box<RawComponent>),
}

impl<'de> Deserialize<'de> for ComponentRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ComponentRef;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the id of a [component.<id>], or a component table")
            }

            fn visit_str<E: serde::de::Error>(self, id: &str) -> Result<ComponentRef, E> {
                Ok(ComponentRef::Id(id.to_string()))
            }

            // The table's own values are read by toml's deserializer, so their spans, and
            // the lines in errors, are kept.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ComponentRef, A::Error> {
                let component =
                    RawComponent::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ComponentRef::Inline(Box::new(component)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: Option<Spanned<toml::Value>>,
    #[serde(default, rename = "description")]
    _description: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    key_value_stores: Vec<Spanned<String>>,
    #[serde(default)]
    sqlite_databases: Vec<Spanned<String>>,
    #[serde(default)]
    environment: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<String>>,
    build: Option<Spanned<RawBuild>>,
    /// For tools, not for the runtime.
    #[serde(default, rename = "tool")]
    _tool: Option<toml::Value>,
    #[serde(default)]
    files: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    exclude_files: Vec<Spanned<String>>,
    // Known to Spin, not run here: each is refused with its reason.
    allowed_http_hosts: Option<Spanned<toml::Value>>,
    ai_models: Option<Spanned<toml::Value>>,
    dependencies: Option<Spanned<toml::Value>>,
    dependencies_inherit_configuration: Option<Spanned<toml::Value>>,
}

/// Refuses a trigger type other than `http`, before its keys, which only it knows, would
/// be taken for mistakes in an HTTP trigger.
fn refuse_other_triggers(ctx: &Ctx<'_>, text: &str) -> Result<(), ManifestError> {
    #[derive(Deserialize)]
    struct Triggers {
        #[serde(default)]
        trigger: BTreeMap<Spanned<String>, serde::de::IgnoredAny>,
    }
    let Ok(triggers) = toml::from_str::<Triggers>(text) else {
        return Ok(()); // the full read says what is wrong
    };
    match triggers.trigger.keys().find(|kind| kind.get_ref() != "http") {
        Some(kind) => Err(ctx.error(
            kind.span(),
            format!(
                "a `{}` trigger: wasmfn runs Spin's HTTP triggers only (events and schedules are wasmfn.toml's `events` and `schedules`)",
                kind.get_ref()
            ),
        )),
        None => Ok(()),
    }
}

/// A Spin manifest as a wasmfn one, and each function's variables (templates over the
/// application's variables, which the raw form has no way to say).
pub(super) struct SpinApp {
    pub(super) raw: RawManifest,
    pub(super) variables: BTreeMap<String, BTreeMap<String, Variable>>,
}

impl SpinApp {
    /// Asks the runtime configuration's variables providers first, for every variable.
    pub(super) fn with_providers(&mut self, providers: &[super::variables::Provider]) {
        let parts = self
            .variables
            .values_mut()
            .flat_map(|vars| vars.values_mut())
            .filter_map(|v| match v {
                Variable::Template(parts) => Some(parts),
                _ => None,
            })
            .flatten();
        for part in parts {
            if let TemplatePart::Variable { providers: p, .. } = part {
                *p = providers.to_vec();
            }
        }
    }
}

/// Reads a Spin manifest.
pub(super) fn read(ctx: &Ctx<'_>, text: &str) -> Result<SpinApp, ManifestError> {
    refuse_other_triggers(ctx, text)?;
    let spin: RawSpin = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ctx.error(span, super::toml_message(&e))
    })?;
    if spin.spin_manifest_version.get_ref() != &toml::Value::Integer(2) {
        return Err(ctx.error(
            spin.spin_manifest_version.span(),
            "wasmfn reads Spin manifest version 2 (`spin_manifest_version = 2`); `spin doctor` upgrades a version 1 manifest".to_string(),
        ));
    }
    if let Some(trigger) = &spin.application.get_ref().trigger {
        return Err(ctx.error(
            trigger.span(),
            "`application.trigger` configures Redis and other triggers, which wasmfn does not run"
                .to_string(),
        ));
    }
    let app_variables = app_variables(ctx, &spin.variables)?;
    let mut functions: Vec<Routed<'_>> = Vec::new();
    let mut unnamed = 0;
    for entries in spin.trigger.values() {
        for entry in entries.get_ref() {
            let found = trigger_component(ctx, &spin, entry, &mut unnamed)?;
            let route = http_route(ctx, entry)?;
            match functions.iter_mut().find(|f| f.name == found.name) {
                Some(f) => f.routes.extend(route),
                None => functions.push(Routed {
                    routes: route.into_iter().collect(),
                    ..found
                }),
            }
        }
    }
    if functions.is_empty() {
        return Err(ctx.error(
            0..0,
            "this Spin manifest has no [[trigger.http]]: nothing would be served".to_string(),
        ));
    }
    let mut raw_functions = Vec::with_capacity(functions.len());
    let mut variables = BTreeMap::new();
    for Routed {
        name,
        name_span,
        component: c,
        span,
        routes,
    } in functions
    {
        refuse_unsupported(ctx, c)?;
        variables.insert(name.clone(), component_variables(ctx, c, &app_variables)?);
        raw_functions.push(Spanned::new(
            span.clone(),
            RawFunction {
                name: Spanned::new(name_span, name),
                component: Some(source(ctx, c, span)?),
                versions: Vec::new(),
                sticky: None,
                routes,
                events: Vec::new(),
                timeout: None,
                memory: None,
                concurrency: None,
                max_body: None,
                reuse: None,
                variables: BTreeMap::new(),
                environment: c.environment.clone(),
                files: c.files.clone(),
                exclude_files: c.exclude_files.clone(),
                key_value_stores: c.key_value_stores.clone(),
                sqlite_databases: c.sqlite_databases.clone(),
                allowed_outbound_hosts: c.allowed_outbound_hosts.clone(),
                outbound_concurrency: None,
                delivery: None,
                schedules: Vec::new(),
                build: c.build.clone(),
            },
        ));
    }
    Ok(SpinApp {
        raw: RawManifest {
            functions: raw_functions,
            events: None,
            deploy: None,
            services: Vec::new(),
            server: None,
            key_value: BTreeMap::new(),
            sqlite: BTreeMap::new(),
            sequences: Vec::new(),
            parallels: Vec::new(),
            profiles: BTreeMap::new(),
            spin: true,
        },
        variables,
    })
}

/// Every store label a component names is `default` or declared in the runtime
/// configuration file, as Spin has it.
pub(super) fn check_store_labels(ctx: &Ctx<'_>, raw: &RawManifest) -> Result<(), ManifestError> {
    for f in &raw.functions {
        for label in &f.get_ref().key_value_stores {
            let l = label.get_ref();
            if l != super::DEFAULT_STORE && !raw.key_value.contains_key(l) {
                return Err(ctx.error(
                    label.span(),
                    format!("no key-value store is labelled `{l}`: declare it in a runtime configuration file as [key_value_store.{l}] and pass --runtime-config-file"),
                ));
            }
        }
    }
    Ok(())
}

/// A component some trigger runs: a function, with the routes of its triggers.
struct Routed<'a> {
    name: String,
    /// Where its id is written.
    name_span: Range<usize>,
    component: &'a RawComponent,
    /// Where the component is written.
    span: Range<usize>,
    routes: Vec<Spanned<String>>,
}

/// The function a trigger runs, with no route yet. An inline component is named as Spin names it: by its
/// trigger's `id`, or the `http-trigger<n>` Spin gives the n-th trigger without one.
fn trigger_component<'a>(
    ctx: &Ctx<'_>,
    spin: &'a RawSpin,
    entry: &'a Spanned<RawTrigger>,
    unnamed: &mut usize,
) -> Result<Routed<'a>, ManifestError> {
    let t = entry.get_ref();
    if let Some(executor) = &t.executor {
        let spin_executor =
            executor.get_ref().get("type").and_then(toml::Value::as_str) == Some("spin");
        if !spin_executor {
            return Err(ctx.error(
                executor.span(),
                "only Spin's own executor (`{ type = \"spin\" }`, the default) runs here; WAGI modules are not components".to_string(),
            ));
        }
    }
    let Some(component) = &t.component else {
        return Err(ctx.error(entry.span(), "a trigger needs a `component`".to_string()));
    };
    match component.get_ref() {
        ComponentRef::Id(id) => {
            let found = spin.component.iter().find(|(k, _)| k.get_ref() == id);
            let Some((key, c)) = found else {
                return Err(ctx.error(component.span(), format!("no [component.{id}] is declared")));
            };
            Ok(Routed {
                name: id.clone(),
                name_span: key.span(),
                component: c.get_ref(),
                span: c.span(),
                routes: Vec::new(),
            })
        }
        ComponentRef::Inline(c) => {
            let trigger = match &t.id {
                Some(id) => id.clone(),
                None => {
                    *unnamed += 1;
                    format!("http-trigger{unnamed}")
                }
            };
            let name = format!("{trigger}-component");
            if spin.component.keys().any(|k| k.get_ref() == &name) {
                return Err(ctx.error(
                    component.span(),
                    format!("this inline component would be named `{name}`, as a [component.{name}] already is; give the trigger another `id`"),
                ));
            }
            Ok(Routed {
                name,
                name_span: component.span(),
                component: c,
                span: component.span(),
                routes: Vec::new(),
            })
        }
    }
}

/// A trigger's route as a wasmfn route; none for a private one.
fn http_route(
    ctx: &Ctx<'_>,
    entry: &Spanned<RawTrigger>,
) -> Result<Option<Spanned<String>>, ManifestError> {
    let Some(route) = &entry.get_ref().route else {
        return Err(ctx.error(entry.span(), "an HTTP trigger needs a `route`".to_string()));
    };
    let text = match route.get_ref() {
        toml::Value::String(s) => s,
        toml::Value::Table(t)
            if t.len() == 1 && t.get("private") == Some(&toml::Value::Boolean(true)) =>
        {
            return Ok(None);
        }
        _ => {
            return Err(ctx.error(
                route.span(),
                "`route` must be a path such as \"/api/...\" or `{ private = true }`".to_string(),
            ));
        }
    };
    let ours = match text.strip_suffix("/...") {
        Some(prefix) => format!("{prefix}/*"),
        None if text == "..." => "/*".to_string(),
        None => text.clone(),
    };
    Ok(Some(Spanned::new(route.span(), ours)))
}

fn source(
    ctx: &Ctx<'_>,
    c: &RawComponent,
    at: Range<usize>,
) -> Result<Spanned<String>, ManifestError> {
    let Some(source) = &c.source else {
        return Err(ctx.error(at, "a component needs a `source`".to_string()));
    };
    match source.get_ref() {
        toml::Value::String(path) => Ok(Spanned::new(source.span(), path.clone())),
        _ => Err(ctx.error(
            source.span(),
            "`source` must be a path to the .wasm file: wasmfn does not download components (`{ url, digest }`) or fetch them from a registry; download it and give its path".to_string(),
        )),
    }
}

fn refuse_unsupported(ctx: &Ctx<'_>, c: &RawComponent) -> Result<(), ManifestError> {
    let refusals: [(&Option<Spanned<toml::Value>>, &str); 4] = [
        (
            &c.allowed_http_hosts,
            "`allowed_http_hosts` is Spin's version 1 key: write `allowed_outbound_hosts` with a scheme, e.g. \"https://example.com\"",
        ),
        (
            &c.ai_models,
            "`ai_models` (Spin's LLM interface) is not served by wasmfn",
        ),
        (
            &c.dependencies,
            "`dependencies` (components composed at load) is not served yet",
        ),
        (
            &c.dependencies_inherit_configuration,
            "`dependencies_inherit_configuration` goes with `dependencies`, which is not served yet",
        ),
    ];
    for (value, why) in refusals {
        if let Some(value) = value {
            return Err(ctx.error(value.span(), why.to_string()));
        }
    }
    Ok(())
}

/// What an application variable is, for the templates that use it.
struct AppVariable {
    default: Option<String>,
}

fn app_variables(
    ctx: &Ctx<'_>,
    raw: &BTreeMap<Spanned<String>, Spanned<RawAppVariable>>,
) -> Result<BTreeMap<String, AppVariable>, ManifestError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        let n = name.get_ref();
        let ok = n.starts_with(|c: char| c.is_ascii_lowercase())
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(ctx.error(
                name.span(),
                format!("variable name {n:?} must be lower-case letters, digits and '_', starting with a letter"),
            ));
        }
        let v = value.get_ref();
        match (&v.default, v.required) {
            (Some(_), true) => {
                return Err(ctx.error(
                    value.span(),
                    format!("variable `{n}` is required, so it takes no `default`"),
                ));
            }
            (None, false) => {
                return Err(ctx.error(
                    value.span(),
                    format!("variable `{n}` needs a `default`, or `required = true`"),
                ));
            }
            _ => {}
        }
        out.insert(
            n.clone(),
            AppVariable {
                default: v.default.clone(),
            },
        );
    }
    Ok(out)
}

/// A component's `variables`: each a template such as `"https://{{ api_host }}/v1"`.
fn component_variables(
    ctx: &Ctx<'_>,
    c: &RawComponent,
    app: &BTreeMap<String, AppVariable>,
) -> Result<BTreeMap<String, Variable>, ManifestError> {
    c.variables
        .iter()
        .map(|(name, template)| {
            let parts = template_parts(template.get_ref(), app)
                .map_err(|e| ctx.error(template.span(), format!("variable `{name}`: {e}")))?;
            Ok((name.clone(), Variable::Template(parts)))
        })
        .collect()
}

fn template_parts(
    text: &str,
    app: &BTreeMap<String, AppVariable>,
) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!("{text:?} opens `{{{{` without closing it"));
        };
        let name = after[..close].trim();
        let Some(variable) = app.get(name) else {
            return Err(format!(
                "`{{{{ {name} }}}}` names no application variable; declare it under [variables]"
            ));
        };
        parts.push(TemplatePart::Variable {
            name: name.to_string(),
            providers: Vec::new(),
            env: format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
            default: variable.default.clone(),
        });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Manifest;
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("/app/spin.toml"), text).map_err(|e| e.to_string())
    }

    const HEAD: &str = "spin_manifest_version = 2\n[application]\nname = \"shop\"\n";

    #[test]
    fn an_http_app_maps_onto_functions_routes_and_grants() {
        let m = parse(&format!(
            "{HEAD}[variables]\napi_host = {{ default = \"api.example.com\" }}\ntoken = {{ required = true, secret = true }}\n\
             [[trigger.http]]\nroute = \"/cart/...\"\ncomponent = \"cart\"\n\
             [[trigger.http]]\nroute = \"/checkout\"\ncomponent = \"cart\"\n\
             [[trigger.http]]\nroute = {{ private = true }}\ncomponent = \"pricing\"\n\
             [component.cart]\nsource = \"target/cart.wasm\"\nallowed_outbound_hosts = [\"https://api.example.com\"]\n\
             key_value_stores = [\"default\"]\nenvironment = {{ MODE = \"live\" }}\n\
             variables = {{ base = \"https://{{{{ api_host }}}}/v1\", token = \"{{{{token}}}}\" }}\n\
             [component.cart.build]\ncommand = \"cargo build --release\"\nwatch = [\"src/**/*.rs\"]\n\
             [component.pricing]\nsource = \"pricing.wasm\"\n"
        ))
        .unwrap();
        let names: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["cart", "pricing"]);
        let cart = &m.functions[0];
        assert_eq!(cart.component, Path::new("/app/target/cart.wasm"));
        let routes: Vec<String> = cart.routes.iter().map(ToString::to_string).collect();
        assert_eq!(routes, ["/cart/*", "/checkout"]);
        assert!(m.functions[1].routes.is_empty(), "private: no route");
        assert_eq!(m.routes.lookup("/cart/items/1"), Some(0));
        assert_eq!(m.routes.lookup("/cart"), Some(0));
        assert_eq!(cart.environment, [("MODE".to_string(), "live".to_string())]);
        assert_eq!(cart.key_value_stores, ["default"]);
        assert_eq!(
            cart.build.as_ref().unwrap().command,
            "cargo build --release"
        );
        assert_eq!(cart.component_at.line, 17, "where its source is written");
        // Templates resolve from SPIN_VARIABLE_<NAME> or the default; a required one
        // without a value says what to set.
        assert_eq!(
            cart.variables["base"].resolve().unwrap(),
            "https://api.example.com/v1"
        );
        let err = cart.variables["token"].resolve().unwrap_err().to_string();
        assert!(err.contains("SPIN_VARIABLE_TOKEN is not set"), "{err}");
    }

    #[test]
    fn an_inline_component_is_a_function_named_as_spin_names_it() {
        let m = parse(&format!(
            "{HEAD}[[trigger.http]]\nroute = \"/a\"\ncomponent = {{ source = \"a.wasm\", key_value_stores = [\"default\"] }}\n\
             [[trigger.http]]\nid = \"shop\"\nroute = \"/b/...\"\n[trigger.http.component]\nsource = \"b.wasm\"\n\
             [[trigger.http]]\nroute = \"/c\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n"
        ))
        .unwrap();
        let names: Vec<&str> = m.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["http-trigger1-component", "shop-component", "c"]);
        assert_eq!(m.functions[0].key_value_stores, ["default"]);
        assert_eq!(m.functions[1].component, Path::new("/app/b.wasm"));
        assert_eq!(m.routes.lookup("/b/x"), Some(1));
        // A mistake inside one is reported on its own line.
        let err = parse(&format!(
            "{HEAD}[[trigger.http]]\nroute = \"/\"\n[trigger.http.component]\nsource = \"a.wasm\"\nwat = 1\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("/app/spin.toml:8:") && err.contains("unknown field `wat`"),
            "{err}"
        );
    }

    #[test]
    fn what_wasmfn_does_not_run_is_refused_on_its_line() {
        let app = |rest: &str| {
            parse(&format!(
                "{HEAD}[[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n{rest}"
            ))
            .unwrap_err()
        };
        for (rest, line, says) in [
            ("files = [\"../secrets/**\"]\n", 9, "without `..`"),
            (
                "sqlite_databases = [\"orders\"]\n",
                9,
                "as [sqlite_database.orders] and pass --runtime-config-file",
            ),
            (
                "allowed_http_hosts = [\"example.com\"]\n",
                9,
                "allowed_outbound_hosts",
            ),
            (
                "[component.c.dependencies]\n\"a:b/c\" = \"1\"\n",
                9,
                "`dependencies`",
            ),
            (
                "[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"c\"\n",
                9,
                "HTTP triggers only",
            ),
            ("wat = 1\n", 9, "unknown field `wat`"),
        ] {
            let err = app(rest);
            assert!(
                err.starts_with(&format!("/app/spin.toml:{line}:")),
                "{rest}: {err}"
            );
            assert!(err.contains(says), "{rest}: {err}");
        }
        for (text, says) in [
            (
                "spin_manifest_version = 1\n[application]\nname = \"a\"\n",
                "manifest version 2",
            ),
            (
                &format!(
                    "{HEAD}[[trigger.http]]\nroute = \"/u/:/...\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\n"
                ),
                "a parameter is a whole segment with a name",
            ),
            (
                &format!("{HEAD}[[trigger.http]]\nroute = \"/\"\ncomponent = \"nope\"\n"),
                "no [component.nope]",
            ),
            (
                &format!(
                    "{HEAD}[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = {{ url = \"https://x/c.wasm\", digest = \"sha256:00\" }}\n"
                ),
                "does not download",
            ),
            (
                &format!("{HEAD}[variables]\nx = {{ secret = true }}\n"),
                "needs a `default`, or `required = true`",
            ),
            (
                &format!(
                    "{HEAD}[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n[component.c]\nsource = \"c.wasm\"\nvariables = {{ v = \"{{{{ nope }}}}\" }}\n"
                ),
                "names no application variable",
            ),
            (HEAD, "no [[trigger.http]]"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with("/app/spin.toml:"), "{err}");
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_wasmfn_manifest_is_not_taken_for_a_spin_one() {
        assert!(!is_spin(
            "[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\n"
        ));
        assert!(is_spin("spin_manifest_version = 2\n"));
        assert!(is_spin(
            "# a Spin app\n\n  spin_manifest_version=2\n[application]\n"
        ));
        // Only at the top level, and only that key.
        assert!(!is_spin("[application]\nspin_manifest_version = 2\n"));
        assert!(!is_spin("spin_manifest_versions = 2\n"));
    }
}
