//! The SQLite databases functions are granted (`sqlite_databases = ["default", "orders"]`)
//! and their declarations (`[sqlite.<label>]`, or a Spin runtime configuration's
//! `[sqlite_database.<label>]`). `default` needs no declaration, as in Spin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, FunctionSpec, ManifestError};

/// The database a function gets when it names `default` and the manifest declares none.
pub const DEFAULT_DATABASE: &str = "default";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSqlite {
    pub(super) path: Option<Spanned<String>>,
}

/// A SQLite database (`[sqlite.<label>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSpec {
    /// Its label, which functions name in `sqlite_databases` and guests in `open`.
    pub label: String,
    /// Its file, resolved against the manifest's directory; `<label>.db` in the data
    /// directory when unset.
    pub path: Option<PathBuf>,
}

/// The databases a function names, each declared (or the implicit `default`), once each.
pub(super) fn grants(
    ctx: &Ctx<'_>,
    raw: &[Spanned<String>],
    declared: &BTreeMap<String, Spanned<RawSqlite>>,
    spin: bool,
) -> Result<Vec<String>, ManifestError> {
    let mut granted = Vec::new();
    for label in raw {
        let l = label.get_ref();
        if l != DEFAULT_DATABASE && !declared.contains_key(l) {
            let how = if spin {
                format!(
                    "declare it in a runtime configuration file as [sqlite_database.{l}] and pass --runtime-config-file"
                )
            } else {
                format!("declare it as [sqlite.{l}] or use \"{DEFAULT_DATABASE}\"")
            };
            return Err(ctx.error(
                label.span(),
                format!("no SQLite database is labelled `{l}`: {how}"),
            ));
        }
        if !granted.contains(l) {
            granted.push(l.clone());
        }
    }
    Ok(granted)
}

/// Every declared database, and the implicit `default` where some function is granted it.
pub(super) fn specs(
    ctx: &Ctx<'_>,
    raw: &BTreeMap<String, Spanned<RawSqlite>>,
    base: &Path,
    functions: &[FunctionSpec],
) -> Result<Vec<SqliteSpec>, ManifestError> {
    let mut specs = Vec::new();
    for (label, declared) in raw {
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(ctx.error(
                declared.span(),
                format!("database label {label:?} must be lower-case letters, digits, '-' or '_'"),
            ));
        }
        specs.push(SqliteSpec {
            label: label.clone(),
            path: declared
                .get_ref()
                .path
                .as_ref()
                .map(|p| base.join(p.get_ref())),
        });
    }
    let granted = functions
        .iter()
        .any(|f| f.sqlite_databases.iter().any(|l| l == DEFAULT_DATABASE));
    if granted && !raw.contains_key(DEFAULT_DATABASE) {
        specs.push(SqliteSpec {
            label: DEFAULT_DATABASE.to_string(),
            path: None,
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use crate::manifest::Manifest;
    use std::path::Path;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("/app/wasmfn.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn functions_are_granted_declared_databases_and_the_default() {
        let m = parse(
            "[sqlite.orders]\npath = \"data/orders.db\"\n\n[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\nsqlite_databases = [\"default\", \"orders\", \"default\"]\n",
        )
        .unwrap();
        assert_eq!(m.functions[0].sqlite_databases, ["default", "orders"]);
        let labels: Vec<_> = m
            .sqlite
            .iter()
            .map(|s| (s.label.as_str(), s.path.clone()))
            .collect();
        assert_eq!(
            labels,
            [
                (
                    "orders",
                    Some(Path::new("/app/data/orders.db").to_path_buf())
                ),
                ("default", None)
            ]
        );
    }

    #[test]
    fn an_undeclared_database_names_its_line_and_what_to_write() {
        let e = parse(
            "[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\nsqlite_databases = [\"orders\"]\n",
        )
        .unwrap_err();
        assert!(e.contains("wasmfn.toml:5:"), "{e}");
        assert!(e.contains("[sqlite.orders]"), "{e}");
        let e = parse("[sqlite.Orders]\n").unwrap_err();
        assert!(e.contains("lower-case"), "{e}");
    }
}
