//! A function's `versions`: several components behind one name and one set of routes and
//! subscriptions, with the traffic split between them inside the host (router.rs picks
//! one per request: by the `x-wasmfn-version` header, a sticky key, or the weights).
//!
//! ```toml
//! versions = [
//!   { name = "blue", component = "users-v1.wasm", weight = 90 },
//!   { name = "green", component = "users-v2.wasm", weight = 10, tag = "canary", variables = { greeting = "Hi" } },
//! ]
//! sticky = { header = "x-user-id" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, Location, ManifestError};
use crate::manifest::variables::Variable;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVersion {
    name: Spanned<String>,
    component: Spanned<String>,
    weight: Spanned<i64>,
    tag: Option<Spanned<String>>,
    #[serde(default)]
    variables: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSticky {
    header: Option<String>,
    cookie: Option<String>,
}

/// A function's versions and how a request picks one.
#[derive(Debug, Clone, PartialEq)]
pub struct Versions {
    /// In manifest order; the weights sum to 100.
    pub list: Vec<Version>,
    /// What keeps one user on one version while the split holds.
    pub sticky: Option<Sticky>,
}

/// One version of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// Unique within the function; a label in metrics and the value of the
    /// `x-wasmfn-version` response header.
    pub name: String,
    /// Another name a request may ask for it by (`x-wasmfn-version: canary`).
    pub tag: Option<String>,
    /// Percent of the traffic it gets (0-100).
    pub weight: u32,
    /// Its component, resolved against the manifest's directory.
    pub component: PathBuf,
    /// Where its `component` is written.
    pub component_at: Location,
    /// Variables over the function's own (a version's value wins).
    pub variables: BTreeMap<String, Variable>,
}

/// The request attribute a sticky split hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// A request header, e.g. `x-user-id`.
    Header(String),
    /// A cookie's value.
    Cookie(String),
}

/// Version names and tags go into headers and metrics labels.
fn valid_label(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// Reads `versions` and `sticky` of one function; `component` is the parser for a
/// component path (the function's own rules).
pub(super) fn parse(
    ctx: &Ctx<'_>,
    base: &Path,
    at: std::ops::Range<usize>,
    raw: &[Spanned<RawVersion>],
    sticky: Option<&Spanned<RawSticky>>,
    component: impl Fn(&Spanned<String>) -> Result<PathBuf, ManifestError>,
) -> Result<Versions, ManifestError> {
    let mut list: Vec<Version> = Vec::with_capacity(raw.len());
    let mut sum = 0i64;
    for v in raw {
        let v = v.get_ref();
        let name = v.name.get_ref();
        if !valid_label(name) {
            return Err(ctx.error(
                v.name.span(),
                format!("version name {name:?} must be lowercase letters, digits, `-` and `.`"),
            ));
        }
        let tag = match &v.tag {
            None => None,
            Some(t) if !valid_label(t.get_ref()) => {
                return Err(ctx.error(
                    t.span(),
                    format!(
                        "version tag {:?} must be lowercase letters, digits, `-` and `.`",
                        t.get_ref()
                    ),
                ));
            }
            Some(t) => Some(t.get_ref().clone()),
        };
        let taken = |label: &str| {
            list.iter()
                .find(|o| o.name == label || o.tag.as_deref() == Some(label))
        };
        if let Some(other) = taken(name) {
            return Err(ctx.error(
                v.name.span(),
                format!("version `{name}` clashes with the name or tag of version `{}`; each must be unique", other.name),
            ));
        }
        if let Some(tag) = &tag {
            let other = taken(tag)
                .map(|o| o.name.as_str())
                .or((tag == name).then_some(name.as_str()));
            if let Some(other) = other {
                return Err(ctx.error(
                    v.tag.as_ref().expect("tag is set").span(),
                    format!("tag `{tag}` clashes with the name or tag of version `{other}`; each must be unique"),
                ));
            }
        }
        let weight = *v.weight.get_ref();
        if !(0..=100).contains(&weight) {
            return Err(ctx.error(
                v.weight.span(),
                format!("`weight` is a percentage from 0 to 100, got {weight}"),
            ));
        }
        sum += weight;
        let mut variables = BTreeMap::new();
        for (key, value) in &v.variables {
            let variable = Variable::from_toml(value.get_ref(), base, &format!("variables.{key}"))
                .map_err(|e| ctx.error(value.span(), e))?;
            variables.insert(key.clone(), variable);
        }
        list.push(Version {
            name: name.clone(),
            tag,
            weight: weight as u32,
            component: component(&v.component)?,
            component_at: ctx.location(v.component.span().start),
            variables,
        });
    }
    if list.is_empty() {
        return Err(ctx.error(at, "`versions` must list at least one version".to_string()));
    }
    if sum != 100 {
        return Err(ctx.error(
            raw[0].span(),
            format!(
                "the weights of `versions` sum to {sum}; they must sum to 100 ({})",
                list.iter()
                    .map(|v| format!("{} = {}", v.name, v.weight))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let sticky = match sticky {
        None => None,
        Some(s) => Some(match (&s.get_ref().header, &s.get_ref().cookie) {
            (Some(h), None) if http::HeaderName::try_from(h.as_str()).is_ok() => {
                Sticky::Header(h.to_ascii_lowercase())
            }
            (None, Some(c)) if !c.is_empty() && !c.contains([';', '=', ' ']) => {
                Sticky::Cookie(c.clone())
            }
            _ => {
                return Err(ctx.error(
                    s.span(),
                    "`sticky` takes exactly one of `header` (a header name) or `cookie` (a cookie name), e.g. sticky = { header = \"x-user-id\" }".to_string(),
                ));
            }
        }),
    };
    Ok(Versions { list, sticky })
}
