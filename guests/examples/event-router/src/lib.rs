//! Filter and transform, from the Knative patterns seed: each event is checked against the
//! rules in the `rules` variable (the seed's `FILTER_RULES`), first match wins, and the
//! rule drops it, routes it (a new type, so other Triggers pick it up) or reshapes its data;
//! the result is the Knative reply. The Trigger's filter does the coarse selection; these
//! rules do what attribute filters cannot.
//!
//! ```json
//! {"rules": [
//!   {"match": {"type": "order.*", "source": "legacy-system"},
//!    "transform": {"type": "order.v2", "add_fields": {"schema_version": "2.0"}, "remove_fields": ["internal"]}},
//!   {"match": {"type": "debug.*"}, "drop": true}
//! ], "default": "drop"}
//! ```
//!
//! A `match` value ending in `*` matches by prefix; others exactly; the attributes are
//! `type`, `source`, `subject` and extensions. `"require": ["order_id"]` also asks for
//! JSON object data with those fields set (not null): a validator passes what has them
//! (a rule with neither `drop` nor `transform` replies with the event unchanged) and drops
//! the rest by default. An event no rule matches is dropped
//! (`"default": "pass"` replies with it unchanged). A routed event keeps its data and
//! subject, gets a new id (`<id>/routed`) and carries its old type in `originaltype`.
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use wasmfn_sdk::{CloudEvent, Error, variables};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rules {
    rules: Vec<Rule>,
    #[serde(default)]
    default: Default,
}

#[derive(Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Default {
    #[default]
    Drop,
    Pass,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    #[serde(rename = "match")]
    when: BTreeMap<String, String>,
    #[serde(default)]
    require: Vec<String>,
    #[serde(default)]
    drop: bool,
    transform: Option<Transform>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transform {
    #[serde(rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    add_fields: Map<String, Value>,
    #[serde(default)]
    remove_fields: Vec<String>,
}

fn attribute<'a>(event: &'a CloudEvent, name: &str) -> Option<&'a str> {
    match name {
        "type" => Some(event.ty()),
        "source" => Some(event.source()),
        "subject" => event.subject(),
        other => event.extension(other),
    }
}

fn matches(rule: &Rule, event: &CloudEvent) -> bool {
    let attributes = rule.when.iter().all(|(name, pattern)| {
        attribute(event, name).is_some_and(|value| match pattern.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => value == pattern,
        })
    });
    attributes
        && (rule.require.is_empty()
            || event.json::<Value>().is_ok_and(|data| {
                rule.require
                    .iter()
                    .all(|field| data.get(field).is_some_and(|v| !v.is_null()))
            }))
}

#[wasmfn_sdk::event]
fn route(event: CloudEvent) -> Result<Option<CloudEvent>, Error> {
    let text =
        variables::get("rules").ok_or_else(|| Error::reject("the rules variable is not set"))?;
    let rules: Rules = serde_json::from_str(&text)
        .map_err(|e| Error::reject(format!("the rules variable is not valid: {e}")))?;
    let Some(rule) = rules.rules.iter().find(|r| matches(r, &event)) else {
        return Ok((rules.default == Default::Pass).then_some(event));
    };
    if rule.drop {
        return Ok(None);
    }
    let Some(t) = &rule.transform else {
        return Ok(Some(event));
    };
    let mut out = CloudEvent::new(
        t.ty.clone().unwrap_or_else(|| event.ty().to_string()),
        "/event-router",
    )
    .with_id(format!("{}/routed", event.id()))
    .with_extension("originaltype", event.ty());
    if let Some(subject) = event.subject() {
        out = out.with_subject(subject);
    }
    if t.add_fields.is_empty() && t.remove_fields.is_empty() {
        if let Some(data) = event.data() {
            out = out.with_data(
                event
                    .datacontenttype()
                    .unwrap_or("application/octet-stream"),
                data.to_vec(),
            );
        }
        return Ok(Some(out));
    }
    let mut data = match event.json::<Value>() {
        Ok(Value::Object(map)) => map,
        Ok(Value::Null) | Err(_) if event.data().is_none() => Map::new(),
        _ => return Err(Error::reject("reshaping needs JSON object data")),
    };
    for field in &t.remove_fields {
        data.remove(field);
    }
    data.extend(t.add_fields.clone());
    Ok(Some(out.with_json(&Value::Object(data))?))
}
