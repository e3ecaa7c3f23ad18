//! Spin's runtime configuration file (`--runtime-config-file`), which says where a Spin
//! app's key-value stores live: each `[key_value_store.<label>]` of type `redis` or `spin`
//! becomes the store of that label, as `[key_value.<label>]` declares one in a
//! `wasmfn.toml`. Its errors name the runtime configuration file and its lines.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, ManifestError, RawKeyValue};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, Spanned<RawStore>>,
    // Known to Spin, not run here: each is refused with its reason.
    sqlite_database: Option<Spanned<toml::Value>>,
    config_provider: Option<Spanned<toml::Value>>,
    variables_provider: Option<Spanned<toml::Value>>,
    llm_compute: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
}

/// The stores the runtime configuration at `path` (its text `text`) declares, as
/// `[key_value.<label>]` entries; an embedded store's `path` resolved against the file's
/// directory, as Spin resolves it.
pub(super) fn stores(
    path: &Path,
    text: &str,
) -> Result<BTreeMap<String, Spanned<RawKeyValue>>, ManifestError> {
    let ctx = Ctx::new(path, text);
    let raw: RawRuntimeConfig = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ctx.error(span, e.message().trim_end().to_string())
    })?;
    for (value, why) in [
        (
            &raw.sqlite_database,
            "`sqlite_database` (Spin's SQLite interface) is not served yet",
        ),
        (
            &raw.config_provider,
            "variable providers other than the environment (`SPIN_VARIABLE_<NAME>`) are not read",
        ),
        (
            &raw.variables_provider,
            "variable providers other than the environment (`SPIN_VARIABLE_<NAME>`) are not read",
        ),
        (
            &raw.llm_compute,
            "Spin's LLM interface is not served by wasmfn",
        ),
    ] {
        if let Some(value) = value {
            return Err(ctx.error(value.span(), why.to_string()));
        }
    }
    let base = path.parent().unwrap_or(Path::new(""));
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
    Ok(out)
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
                "[sqlite_database.default]\ntype = \"spin\"\n",
                1,
                "sqlite_database",
            ),
            (
                "[[config_provider]]\ntype = \"vault\"\n",
                1,
                "variable providers",
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
