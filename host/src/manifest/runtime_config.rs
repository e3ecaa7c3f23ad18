//! Spin's runtime configuration file (`--runtime-config-file`), which says where a Spin
//! app's key-value stores live and where its variables come from: each
//! `[key_value_store.<label>]` of type `redis` or `spin` becomes the store of that label,
//! as `[key_value.<label>]` declares one in a `wasmfn.toml`, each
//! `[sqlite_database.<label>]` of type `spin` the database of that label, as
//! `[sqlite.<label>]` declares one; each `[[variables_provider]]`
//! (or its older name `[[config_provider]]`) of type `static` or `env` is asked for an
//! application variable before `SPIN_VARIABLE_<NAME>`, in the file's order, as Spin asks
//! them. Its errors name the runtime configuration file and its lines.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::Spanned;

use super::databases::RawSqlite;
use super::variables::Provider;
use super::{Ctx, ManifestError, RawKeyValue};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, Spanned<RawStore>>,
    #[serde(default)]
    sqlite_database: BTreeMap<String, Spanned<RawDatabase>>,
    #[serde(default)]
    config_provider: Vec<Spanned<RawProvider>>,
    #[serde(default)]
    variables_provider: Vec<Spanned<RawProvider>>,
    // Known to Spin, not run here: refused with its reason.
    llm_compute: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    /// `static`: the values.
    values: Option<BTreeMap<String, String>>,
    /// `env`: the prefix (`SPIN_VARIABLE` when left out).
    prefix: Option<String>,
    /// `env`: a dotenv file, which is not read.
    dotenv_path: Option<Spanned<toml::Value>>,
    // Vault's and Azure Key Vault's keys, so that the type is what is refused.
    #[serde(default, rename = "url")]
    _url: Option<IgnoredAny>,
    #[serde(default, rename = "token")]
    _token: Option<IgnoredAny>,
    #[serde(default, rename = "mount")]
    _mount: Option<IgnoredAny>,
    #[serde(default, rename = "vault_url")]
    _vault_url: Option<IgnoredAny>,
    #[serde(default, rename = "client_id")]
    _client_id: Option<IgnoredAny>,
    #[serde(default, rename = "client_secret")]
    _client_secret: Option<IgnoredAny>,
    #[serde(default, rename = "tenant_id")]
    _tenant_id: Option<IgnoredAny>,
    #[serde(default, rename = "authority_host")]
    _authority_host: Option<IgnoredAny>,
}

/// What a runtime configuration file declares.
pub(super) struct RuntimeConfig {
    /// Its stores, as `[key_value.<label>]` entries.
    pub(super) stores: BTreeMap<String, Spanned<RawKeyValue>>,
    /// Its SQLite databases, as `[sqlite.<label>]` entries.
    pub(super) databases: BTreeMap<String, Spanned<RawSqlite>>,
    /// Its variables providers, in order.
    pub(super) providers: Vec<Provider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    path: Option<Spanned<String>>,
    // libSQL's keys, so that the type is what is refused.
    #[serde(default, rename = "url")]
    _url: Option<IgnoredAny>,
    #[serde(default, rename = "token")]
    _token: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
}

/// The stores and variables providers the runtime configuration at `path` (its text
/// `text`) declares; an embedded store's `path` resolved against the file's directory, as
/// Spin resolves it.
pub(super) fn read(path: &Path, text: &str) -> Result<RuntimeConfig, ManifestError> {
    let ctx = Ctx::new(path, text);
    let raw: RawRuntimeConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ctx.error(span, super::toml_message(&e))
    })?;
    if let Some(value) = &raw.llm_compute {
        return Err(ctx.error(
            value.span(),
            "Spin's LLM interface is not served by wasmfn".to_string(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new(""));
    let mut databases = BTreeMap::new();
    for (label, database) in &raw.sqlite_database {
        let d = database.get_ref();
        if d.kind.get_ref() != "spin" {
            return Err(ctx.error(
                d.kind.span(),
                format!("database type {:?} is not served: wasmfn keeps SQLite databases in local files (`spin`)", d.kind.get_ref()),
            ));
        }
        let path = d
            .path
            .as_ref()
            .map(|p| Spanned::new(0..0, base.join(p.get_ref()).display().to_string()));
        databases.insert(label.clone(), Spanned::new(0..0, RawSqlite { path }));
    }
    let mut out = BTreeMap::new();
    for (label, store) in &raw.key_value_store {
        let s = store.get_ref();
        let declared = match s.kind.get_ref().as_str() {
            "redis" => {
                let Some(url) = &s.url else {
                    return Err(ctx.error(
                        store.span(),
                        format!("store `{label}` of type redis needs a `url` (redis://...)"),
                    ));
                };
                RawKeyValue {
                    kind: Spanned::new(0..0, "redis".to_string()),
                    url: Some(Spanned::new(
                        0..0,
                        toml::Value::String(url.get_ref().clone()),
                    )),
                    path: None,
                    prefix: None,
                }
            }
            "spin" => RawKeyValue {
                kind: Spanned::new(0..0, "embedded".to_string()),
                url: None,
                path: s
                    .path
                    .as_ref()
                    .map(|p| Spanned::new(0..0, base.join(p.get_ref()).display().to_string())),
                prefix: None,
            },
            other => {
                return Err(ctx.error(
                    s.kind.span(),
                    format!("store type {other:?} is not served: wasmfn keeps stores in Redis (`redis`) or in a local file (`spin`)"),
                ));
            }
        };
        if let (Some(url), "redis") = (&s.url, s.kind.get_ref().as_str())
            && !url.get_ref().starts_with("redis://")
            && !url.get_ref().starts_with("rediss://")
        {
            return Err(ctx.error(
                url.span(),
                format!("store `{label}`: {:?} is not a redis:// URL", url.get_ref()),
            ));
        }
        out.insert(label.clone(), Spanned::new(0..0, declared));
    }
    let mut providers = Vec::new();
    for provider in raw.variables_provider.iter().chain(&raw.config_provider) {
        let p = provider.get_ref();
        providers.push(match p.kind.get_ref().as_str() {
            "static" => Provider::Static(p.values.clone().unwrap_or_default()),
            "env" => {
                if let Some(dotenv) = &p.dotenv_path {
                    return Err(ctx.error(
                        dotenv.span(),
                        "`dotenv_path` is not read: set the variables in the environment (on Knative, from a Secret)".to_string(),
                    ));
                }
                Provider::Env {
                    prefix: p.prefix.clone().unwrap_or_else(|| "SPIN_VARIABLE".to_string()),
                }
            }
            other => {
                return Err(ctx.error(
                    p.kind.span(),
                    format!("variables provider {other:?} is not read: wasmfn reads `static` and `env` providers (on Knative, put secrets in a Secret and read them from the environment)"),
                ));
            }
        });
    }
    Ok(RuntimeConfig {
        stores: out,
        databases,
        providers,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::{KeyValueKind, Manifest};
    use crate::manifest::variables::Variable;

    const SPIN: &str = "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
        [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
        [component.c]\nsource = \"c.wasm\"\nkey_value_stores = [\"default\", \"user_data\"]\n";

    fn parse(spin: &str, rc: Option<&str>) -> Result<Manifest, String> {
        Manifest::parse_full(
            Path::new("/app/spin.toml"),
            spin,
            None,
            rc.map(|text| (Path::new("/etc/app/rc.toml"), text)),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn spin_databases_become_the_labels_databases() {
        let spin = SPIN.replace(
            "key_value_stores = [\"default\", \"user_data\"]",
            "sqlite_databases = [\"default\", \"orders\"]",
        );
        let m = parse(
            &spin,
            Some("[sqlite_database.orders]\ntype = \"spin\"\npath = \"data/orders.db\"\n"),
        )
        .unwrap();
        let paths: Vec<_> = m
            .sqlite
            .iter()
            .map(|d| (d.label.as_str(), d.path.clone()))
            .collect();
        assert_eq!(
            paths,
            [
                ("orders", Some(PathBuf::from("/etc/app/data/orders.db"))),
                ("default", None)
            ],
            "a path relative to the runtime configuration file, as Spin resolves it"
        );
        let e = parse(&spin, None).unwrap_err();
        assert!(e.contains("[sqlite_database.orders]"), "{e}");
    }

    #[test]
    fn spin_stores_become_the_labels_stores() {
        let m = parse(
            SPIN,
            Some("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://cache:6379\"\n\n[key_value_store.user_data]\ntype = \"spin\"\npath = \"data/user.db\"\n"),
        )
        .unwrap();
        let kind = |label: &str| {
            m.key_value
                .iter()
                .find(|s| s.label == label)
                .unwrap()
                .kind
                .clone()
        };
        assert_eq!(
            kind("default"),
            KeyValueKind::Redis {
                url: Variable::Literal("redis://cache:6379".into()),
                prefix: None
            }
        );
        assert_eq!(
            kind("user_data"),
            KeyValueKind::Embedded {
                path: Some(PathBuf::from("/etc/app/data/user.db"))
            },
            "a path is the runtime configuration file's"
        );
    }

    #[test]
    fn variables_come_from_the_providers_in_order_then_the_environment_then_the_default() {
        let spin = "spin_manifest_version = 2\n[application]\nname = \"a\"\n\
            [variables]\nrct_a = { default = \"da\" }\nrct_b = { default = \"db\" }\n\
            rct_c = { default = \"dc\" }\nrct_d = { required = true }\nrct_e = { default = \"de\" }\n\
            [[trigger.http]]\nroute = \"/...\"\ncomponent = \"c\"\n\
            [component.c]\nsource = \"c.wasm\"\n\
            [component.c.variables]\nall = \"{{ rct_a }} {{ rct_b }} {{ rct_c }} {{ rct_d }} {{ rct_e }}\"\n";
        let rc = "[[variables_provider]]\ntype = \"static\"\n\
            values = { rct_a = \"static-a\", rct_d = \"static-d\" }\n\
            [[variables_provider]]\ntype = \"env\"\nprefix = \"WASMFN_RCT\"\n";
        // SAFETY: names that no other test reads.
        unsafe {
            std::env::set_var("WASMFN_RCT_RCT_B", "env-b");
            std::env::set_var("SPIN_VARIABLE_RCT_C", "spin-c");
            std::env::set_var("SPIN_VARIABLE_RCT_A", "not asked: static-a comes first");
        }
        let m = parse(spin, Some(rc)).unwrap();
        let all = &m.functions[0].variables["all"];
        assert_eq!(all.resolve().unwrap(), "static-a env-b spin-c static-d de");
        assert!(
            !format!("{all:?}").contains("static-"),
            "a value written in the file is never shown: {all:?}"
        );
        // Without the file, the required one has no value.
        let m = parse(spin, None).unwrap();
        let err = m.functions[0].variables["all"].resolve().unwrap_err();
        assert!(err.to_string().contains("SPIN_VARIABLE_RCT_D"), "{err}");
    }

    #[test]
    fn what_is_not_served_is_refused_on_its_line_of_the_runtime_config() {
        for (rc, line, says) in [
            (
                "[key_value_store.default]\ntype = \"azure_cosmos\"\n",
                2,
                "is not served",
            ),
            (
                "[key_value_store.default]\ntype = \"redis\"\n",
                1,
                "needs a `url`",
            ),
            (
                "[key_value_store.default]\ntype = \"redis\"\nurl = \"http://x\"\n",
                3,
                "not a redis:// URL",
            ),
            (
                "[sqlite_database.default]\ntype = \"libsql\"\nurl = \"x\"\n",
                2,
                "database type \"libsql\" is not served",
            ),
            (
                "[[config_provider]]\ntype = \"vault\"\nurl = \"https://vault\"\n",
                2,
                "variables provider \"vault\" is not read",
            ),
            (
                "[[variables_provider]]\ntype = \"env\"\ndotenv_path = \".env\"\n",
                3,
                "`dotenv_path` is not read",
            ),
        ] {
            let err = parse(SPIN, Some(rc)).unwrap_err();
            assert!(
                err.starts_with(&format!("/etc/app/rc.toml:{line}:")),
                "{rc}: {err}"
            );
            assert!(err.contains(says), "{rc}: {err}");
        }
        // A label no store is declared for, without one.
        let err = parse(SPIN, None).unwrap_err();
        assert!(err.starts_with("/app/spin.toml:9:"), "{err}");
        assert!(err.contains("[key_value_store.user_data]"), "{err}");
        // A wasmfn.toml declares its own.
        let err = Manifest::parse_full(
            Path::new("/app/wasmfn.toml"),
            "[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\n",
            None,
            Some((Path::new("/etc/app/rc.toml"), "")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("goes with a spin.toml"), "{err}");
    }
}
