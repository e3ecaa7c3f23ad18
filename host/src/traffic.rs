//! Which version of a function answers a request (manifest/versions.rs): the one the
//! `x-wasmfn-version` header names (by name or tag, so a tester reaches a weight-0 canary
//! as a Knative tag URL does), else the weights: by a stable hash of the sticky key when
//! the function has one and the request carries it, at random otherwise. The weights can
//! be changed while serving (the admin listener, `wasmfn rollout`); the next request sees
//! them, a request already running keeps its version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;

use crate::manifest::versions::{Sticky, Versions};

/// The request header that asks for a version by name or tag; also set on the response
/// of a function with versions, naming the one that answered.
pub const VERSION_HEADER: &str = "x-wasmfn-version";

/// How one function's traffic is split between its versions.
pub struct Split {
    names: Vec<String>,
    tags: Vec<Option<String>>,
    by_label: HashMap<String, usize>,
    weights: ArcSwap<Vec<u32>>,
    sticky: Option<Sticky>,
}

/// Why new weights were refused.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A name that is no version of the function.
    #[error("`{0}` is not a version of this function (its versions: {1})")]
    UnknownVersion(String, String),
    /// They do not add up.
    #[error("the weights sum to {0}; they must sum to 100")]
    Sum(u64),
}

impl Split {
    /// The split the manifest sets.
    pub fn new(versions: &Versions) -> Self {
        let mut by_label = HashMap::new();
        for (i, v) in versions.list.iter().enumerate() {
            by_label.insert(v.name.clone(), i);
            if let Some(tag) = &v.tag {
                by_label.insert(tag.clone(), i);
            }
        }
        Self {
            names: versions.list.iter().map(|v| v.name.clone()).collect(),
            tags: versions.list.iter().map(|v| v.tag.clone()).collect(),
            by_label,
            weights: ArcSwap::new(Arc::new(versions.list.iter().map(|v| v.weight).collect())),
            sticky: versions.sticky.clone(),
        }
    }

    /// The version for a request with `headers`.
    pub fn choose(&self, headers: &HeaderMap) -> usize {
        if let Some(&v) = headers
            .get(VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|label| self.by_label.get(label.trim()))
        {
            return v;
        }
        let point = match self.sticky.as_ref().and_then(|s| sticky_key(s, headers)) {
            Some(key) => (stable_hash(key.as_bytes()) % 100) as u32,
            None => fastrand::u32(0..100),
        };
        pick(&self.weights.load(), point)
    }

    /// The version for an event (by the weights; events carry no sticky key).
    pub fn choose_for_event(&self) -> usize {
        pick(&self.weights.load(), fastrand::u32(0..100))
    }

    /// Version `v`'s name.
    pub fn name(&self, v: usize) -> &str {
        &self.names[v]
    }

    /// Each version's name, tag and current weight, in manifest order.
    pub fn weights(&self) -> Vec<(String, Option<String>, u32)> {
        let weights = self.weights.load();
        self.names
            .iter()
            .zip(&self.tags)
            .zip(weights.iter())
            .map(|((n, t), w)| (n.clone(), t.clone(), *w))
            .collect()
    }

    /// Replaces the weights; versions not named get 0.
    pub fn set_weights(&self, new: &BTreeMap<String, u32>) -> Result<(), WeightsError> {
        let mut weights = vec![0; self.names.len()];
        for (name, weight) in new {
            let Some(i) = self.names.iter().position(|n| n == name) else {
                return Err(WeightsError::UnknownVersion(
                    name.clone(),
                    self.names.join(", "),
                ));
            };
            weights[i] = *weight;
        }
        // In u64: u32 weights from a request could wrap a u32 sum around to 100.
        let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if sum != 100 {
            return Err(WeightsError::Sum(sum));
        }
        self.weights.store(Arc::new(weights));
        Ok(())
    }
}

/// The version whose share of 0..100 holds `point`.
fn pick(weights: &[u32], point: u32) -> usize {
    let mut upto = 0;
    for (i, w) in weights.iter().enumerate() {
        upto += w;
        if point < upto {
            return i;
        }
    }
    // Unreachable while the weights sum to 100, which both setters check.
    weights.iter().rposition(|&w| w > 0).unwrap_or(0)
}

fn sticky_key<'a>(sticky: &Sticky, headers: &'a HeaderMap) -> Option<&'a str> {
    match sticky {
        Sticky::Header(name) => headers.get(name.as_str())?.to_str().ok(),
        Sticky::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then_some(v)
            }),
    }
    .filter(|key| !key.is_empty())
}

/// FNV-1a: the same on every host and every restart, so every replica of a Service puts a
/// user on the same version.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;
    use std::path::Path;

    fn split(extra: &str, weights: [u32; 3]) -> Split {
        let text = format!(
            "[[functions]]\nname = \"f\"\nroutes = [\"/f\"]\n{extra}\nversions = [\n\
             {{ name = \"blue\", component = \"a.wasm\", weight = {} }},\n\
             {{ name = \"green\", component = \"b.wasm\", weight = {}, tag = \"canary\" }},\n\
             {{ name = \"red\", component = \"c.wasm\", weight = {} }},\n]\n",
            weights[0], weights[1], weights[2]
        );
        let m = Manifest::parse(Path::new("/m/wasmfn.toml"), &text).unwrap();
        Split::new(m.functions[0].versions.as_ref().unwrap())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_header_names_a_version_by_name_or_tag_even_at_weight_zero() {
        let s = split("", [100, 0, 0]);
        assert_eq!(s.choose(&headers(&[(VERSION_HEADER, "canary")])), 1);
        assert_eq!(s.choose(&headers(&[(VERSION_HEADER, "red")])), 2);
        // Unknown: the weights decide.
        assert_eq!(s.choose(&headers(&[(VERSION_HEADER, "purple")])), 0);
    }

    #[test]
    fn weights_split_random_traffic() {
        let s = split("", [70, 30, 0]);
        let mut counts = [0; 3];
        for _ in 0..10_000 {
            counts[s.choose(&HeaderMap::new())] += 1;
        }
        assert!((6_700..7_300).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[2], 0);
    }

    #[test]
    fn a_sticky_key_always_lands_on_one_version_and_keys_spread() {
        for sticky in [
            "sticky = { header = \"x-user-id\" }",
            "sticky = { cookie = \"uid\" }",
        ] {
            let s = split(sticky, [50, 50, 0]);
            let mut seen = [0; 3];
            for user in 0..1_000 {
                let h = if sticky.contains("header") {
                    headers(&[("x-user-id", &format!("user-{user}"))])
                } else {
                    headers(&[("cookie", &format!("a=1; uid=user-{user}; b=2"))])
                };
                let first = s.choose(&h);
                for _ in 0..5 {
                    assert_eq!(s.choose(&h), first);
                }
                seen[first] += 1;
            }
            assert!((400..600).contains(&seen[0]), "{sticky}: {seen:?}");
        }
    }

    #[test]
    fn new_weights_must_name_versions_and_sum_to_100() {
        let s = split("", [100, 0, 0]);
        let w = |pairs: &[(&str, u32)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert!(matches!(
            s.set_weights(&w(&[("blue", 50), ("nope", 50)])),
            Err(WeightsError::UnknownVersion(..))
        ));
        assert!(matches!(
            s.set_weights(&w(&[("blue", 50), ("green", 40)])),
            Err(WeightsError::Sum(90))
        ));
        // Weights that would wrap a u32 sum around to exactly 100 are refused, and the
        // split stays as it was.
        assert!(matches!(
            s.set_weights(&w(&[("blue", 101), ("green", u32::MAX)])),
            Err(WeightsError::Sum(4_294_967_396))
        ));
        assert_eq!(s.choose(&HeaderMap::new()), 0);
        s.set_weights(&w(&[("green", 100)])).unwrap();
        assert_eq!(s.choose(&HeaderMap::new()), 1);
        assert_eq!(s.weights()[0].2, 0);
    }
}
