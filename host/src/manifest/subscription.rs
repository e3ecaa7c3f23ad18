//! Event subscriptions: Knative Trigger filters, validated as Knative validates them and
//! matched against CloudEvent attributes.

use std::collections::BTreeMap;

use cloudevents::Event;
use serde::Deserialize;

use crate::cloudevent::attribute;

/// One filter expression (Knative's `filters` dialect, without CESQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The attribute equals the value.
    Exact(String, String),
    /// The attribute starts with the value.
    Prefix(String, String),
    /// The attribute ends with the value.
    Suffix(String, String),
    /// Every nested filter matches.
    All(Vec<Filter>),
    /// At least one nested filter matches.
    Any(Vec<Filter>),
    /// The nested filter does not match.
    Not(Box<Filter>),
}

impl Filter {
    /// Whether `event` passes. An attribute the event lacks matches no `exact`, `prefix`
    /// or `suffix`.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::Exact(name, value) => attribute(event, name).is_some_and(|a| a == *value),
            Filter::Prefix(name, value) => {
                attribute(event, name).is_some_and(|a| a.starts_with(value.as_str()))
            }
            Filter::Suffix(name, value) => {
                attribute(event, name).is_some_and(|a| a.ends_with(value.as_str()))
            }
            Filter::All(all) => all.iter().all(|f| f.matches(event)),
            Filter::Any(any) => any.iter().any(|f| f.matches(event)),
            Filter::Not(not) => !not.matches(event),
        }
    }
}

/// One entry of a function's `events` list: the event must pass every filter. No filters
/// means every event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// The filters, all of which must match.
    pub filters: Vec<Filter>,
    /// Whether it was written in the attribute shorthand (`{ type = "..." }`), which
    /// renders as a Trigger's legacy `filter.attributes`.
    pub shorthand: bool,
}

impl Subscription {
    /// Whether `event` is delivered to this subscription.
    pub fn matches(&self, event: &Event) -> bool {
        self.filters.iter().all(|f| f.matches(event))
    }

    /// Reads a subscription from its manifest form: either attribute shorthand
    /// (`{ type = "order.created", source = "/orders" }`, exact matches where `""` matches
    /// anything, as Knative's `filter.attributes`) or `{ filters = [ ... ] }`. An error
    /// starts with the path inside the subscription (`filters[0].exact`) or with `: `.
    pub fn from_toml(value: toml::Value) -> Result<Self, String> {
        let toml::Value::Table(table) = value else {
            return Err(
                ": a subscription is a table: `{ type = \"...\" }` or `{ filters = [...] }`".into(),
            );
        };
        if let Some(filters) = table.get("filters")
            && filters.is_array()
        {
            if table.len() > 1 {
                return Err(
                    ": a subscription has either `filters` or attribute keys, not both".into(),
                );
            }
            let raw: Vec<RawFilter> = filters
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| format!("filters: {}", e.message().trim_end()))?;
            let filters = raw
                .into_iter()
                .enumerate()
                .map(|(i, f)| f.validate().map_err(|e| format!("filters[{i}]{e}")))
                .collect::<Result<_, _>>()?;
            return Ok(Self {
                filters,
                shorthand: false,
            });
        }
        let mut filters = Vec::new();
        for (name, value) in table {
            check_attribute_name(&name).map_err(|e| format!(": {e}"))?;
            let toml::Value::String(value) = value else {
                return Err(format!(
                    ": attribute `{name}` must be a string (exact match; \"\" matches any value)"
                ));
            };
            if !value.is_empty() {
                filters.push(Filter::Exact(name, value));
            }
        }
        Ok(Self {
            filters,
            shorthand: true,
        })
    }
}

/// A filter as written: exactly one key may be set, which `validate` checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    exact: Option<BTreeMap<String, String>>,
    prefix: Option<BTreeMap<String, String>>,
    suffix: Option<BTreeMap<String, String>>,
    all: Option<Vec<RawFilter>>,
    any: Option<Vec<RawFilter>>,
    not: Option<Box<RawFilter>>,
    cesql: Option<String>,
}

impl RawFilter {
    /// Knative's rules (trigger_validation.go): exactly one dialect per filter; `exact`,
    /// `prefix` and `suffix` hold exactly one attribute; `all` and `any` are non-empty;
    /// attribute names are lowercase letters and digits starting with a letter. Errors
    /// start with the path below this filter (`.all[1].exact`) and then say what is wrong.
    fn validate(self) -> Result<Filter, String> {
        let set = [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.suffix.is_some(),
            self.all.is_some(),
            self.any.is_some(),
            self.not.is_some(),
            self.cesql.is_some(),
        ]
        .into_iter()
        .filter(|&b| b)
        .count();
        if set != 1 {
            return Err(format!(
                ": expected exactly one of exact, prefix, suffix, all, any, not; found {set}"
            ));
        }
        let single = |kind: &str, map: BTreeMap<String, String>| {
            if map.len() != 1 {
                return Err(format!(
                    ".{kind}: expected exactly one attribute, found {}",
                    map.len()
                ));
            }
            let (name, value) = map.into_iter().next().expect("one entry");
            check_attribute_name(&name).map_err(|e| format!(".{kind}: {e}"))?;
            if kind != "exact" && value.is_empty() {
                return Err(format!(".{kind}: the value for `{name}` must not be empty"));
            }
            Ok((name, value))
        };
        let list = |kind: &str, items: Vec<RawFilter>| {
            if items.is_empty() {
                return Err(format!(".{kind}: must list at least one filter"));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, f)| f.validate().map_err(|e| format!(".{kind}[{i}]{e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        if let Some(map) = self.exact {
            let (n, v) = single("exact", map)?;
            Ok(Filter::Exact(n, v))
        } else if let Some(map) = self.prefix {
            let (n, v) = single("prefix", map)?;
            Ok(Filter::Prefix(n, v))
        } else if let Some(map) = self.suffix {
            let (n, v) = single("suffix", map)?;
            Ok(Filter::Suffix(n, v))
        } else if let Some(items) = self.all {
            Ok(Filter::All(list("all", items)?))
        } else if let Some(items) = self.any {
            Ok(Filter::Any(list("any", items)?))
        } else if let Some(not) = self.not {
            Ok(Filter::Not(Box::new(
                not.validate().map_err(|e| format!(".not{e}"))?,
            )))
        } else {
            Err(".cesql: CESQL expressions are not supported yet; use exact, prefix, suffix, all, any and not".into())
        }
    }
}

fn check_attribute_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid attribute name {name:?}: it must start with a lowercase letter and contain only lowercase letters and digits"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn event(ty: &str, source: &str) -> Event {
        EventBuilderV10::new()
            .id("1")
            .ty(ty)
            .source(source)
            .extension("region", "eu-west")
            .build()
            .unwrap()
    }

    fn sub(toml_text: &str) -> Result<Subscription, String> {
        let value: toml::Table = toml::from_str(&format!("s = {toml_text}")).unwrap();
        Subscription::from_toml(value["s"].clone())
    }

    #[test]
    fn shorthand_is_exact_matches_and_empty_is_a_wildcard() {
        let s = sub(r#"{ type = "order.created", source = "" }"#).unwrap();
        assert!(s.shorthand);
        assert!(s.matches(&event("order.created", "/anything")));
        assert!(!s.matches(&event("order.created.v2", "/orders")));
        assert!(sub("{}").unwrap().matches(&event("x", "/y")));
    }

    #[test]
    fn filters_combine_as_knative_does() {
        let s = sub(
            r#"{ filters = [
                { prefix = { type = "order." } },
                { not = { exact = { source = "/legacy" } } },
                { any = [ { suffix = { type = ".created" } }, { exact = { region = "eu-west" } } ] },
            ] }"#,
        )
        .unwrap();
        assert!(s.matches(&event("order.created", "/orders")));
        assert!(!s.matches(&event("order.created", "/legacy")));
        assert!(!s.matches(&event("inventory.reserved", "/orders")));
        let all = sub(r#"{ filters = [ { all = [ { exact = { type = "a" } }, { exact = { region = "us" } } ] } ] }"#)
            .unwrap();
        assert!(!all.matches(&event("a", "/s")));
        // A missing attribute never matches, so `not` of it does.
        let missing = sub(r#"{ filters = [ { not = { exact = { subject = "x" } } } ] }"#).unwrap();
        assert!(missing.matches(&event("a", "/s")));
    }

    #[test]
    fn invalid_filters_are_rejected_with_the_path_and_the_rule() {
        let cases = [
            (
                r#"{ filters = [ { exact = { type = "a", source = "b" } } ] }"#,
                "filters[0].exact: expected exactly one attribute, found 2",
            ),
            (
                r#"{ filters = [ { exact = { type = "a" }, prefix = { type = "b" } } ] }"#,
                "filters[0]: expected exactly one of",
            ),
            (
                r#"{ filters = [ { all = [] } ] }"#,
                "filters[0].all: must list at least one filter",
            ),
            (
                r#"{ filters = [ { any = [ { prefix = { Type = "a" } } ] } ] }"#,
                "filters[0].any[0].prefix: invalid attribute name \"Type\"",
            ),
            (
                r#"{ filters = [ { suffix = { type = "" } } ] }"#,
                "must not be empty",
            ),
            (r#"{ filters = [ { cesql = "type = 'a'" } ] }"#, "CESQL"),
            (
                r#"{ filters = [ { regex = { type = "a" } } ] }"#,
                "unknown field `regex`",
            ),
            (r#"{ filters = [], type = "a" }"#, "not both"),
            (r#"{ type = 1 }"#, "must be a string"),
            (r#"{ "9type" = "a" }"#, "invalid attribute name"),
        ];
        for (text, expected) in cases {
            let e = sub(text).unwrap_err();
            assert!(
                e.contains(expected),
                "{text}: {e:?} should contain {expected:?}"
            );
        }
    }
}
