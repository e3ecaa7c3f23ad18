//! Flows of functions (`[[sequences]]`, `[[parallels]]`), as Knative's Sequence and
//! Parallel: a sequence hands each step's reply to the next; a parallel gives an event to
//! every branch (through the branch's filter function, if it has one). On Knative they
//! render as `flows.knative.dev/v1` objects whose steps are the functions' own paths; with
//! no Broker the host runs them itself, in the same order (events/dispatch.rs).

use serde::Deserialize;
use toml::Spanned;

use super::{Ctx, FunctionSpec, ManifestError};
use crate::manifest::subscription::Subscription;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSequence {
    name: Spanned<String>,
    steps: Vec<Spanned<String>>,
    #[serde(default)]
    events: Vec<Spanned<toml::Value>>,
    reply: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawParallel {
    name: Spanned<String>,
    branches: Vec<Spanned<RawBranch>>,
    #[serde(default)]
    events: Vec<Spanned<toml::Value>>,
    reply: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBranch {
    subscriber: Spanned<String>,
    filter: Option<Spanned<String>>,
}

/// A sequence or a parallel.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Its name (a DNS label; the Knative object's name).
    pub name: String,
    /// What it does.
    pub kind: FlowKind,
    /// The events that start it (a Trigger on Knative; empty: only what is sent to it).
    pub events: Vec<Subscription>,
    /// Whether its final replies go on to the Broker (or, without one, to this host's
    /// subscribers); otherwise they are dropped.
    pub reply: bool,
}

/// The two shapes of flow.
#[derive(Debug, Clone)]
pub enum FlowKind {
    /// Function indexes, in order: each step gets the previous step's reply.
    Sequence(Vec<usize>),
    /// Every branch gets the event.
    Parallel(Vec<Branch>),
}

/// One branch of a parallel.
#[derive(Debug, Clone, Copy)]
pub struct Branch {
    /// The function that handles the event.
    pub subscriber: usize,
    /// A function that passes the event on (by replying with it) or holds it back (by
    /// replying with nothing).
    pub filter: Option<usize>,
}

impl Flow {
    /// Every function the flow runs.
    pub fn functions(&self) -> Vec<usize> {
        match &self.kind {
            FlowKind::Sequence(steps) => steps.clone(),
            FlowKind::Parallel(branches) => branches
                .iter()
                .flat_map(|b| b.filter.into_iter().chain([b.subscriber]))
                .collect(),
        }
    }
}

fn name(ctx: &Ctx<'_>, n: &Spanned<String>, taken: &[Flow]) -> Result<String, ManifestError> {
    let v = n.get_ref();
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.as_bytes()[0].is_ascii_lowercase()
        && !v.ends_with('-')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(ctx.error(
            n.span(),
            format!("flow name {v:?} must be 1-63 of a-z, 0-9 and '-', starting with a letter"),
        ));
    }
    if taken.iter().any(|f| &f.name == v) {
        return Err(ctx.error(n.span(), format!("two flows are named `{v}`")));
    }
    Ok(v.clone())
}

fn reply(ctx: &Ctx<'_>, r: &Option<Spanned<String>>) -> Result<bool, ManifestError> {
    match r.as_ref().map(|r| (r.get_ref().as_str(), r.span())) {
        None | Some(("broker", _)) => Ok(true),
        Some(("none", _)) => Ok(false),
        Some((other, span)) => Err(ctx.error(
            span,
            format!("`reply` is \"broker\" (the default: replies go on as events) or \"none\", got {other:?}"),
        )),
    }
}

pub(super) fn parse(
    ctx: &Ctx<'_>,
    sequences: &[Spanned<RawSequence>],
    parallels: &[Spanned<RawParallel>],
    functions: &[FunctionSpec],
) -> Result<Vec<Flow>, ManifestError> {
    let mut flows = Vec::new();
    for raw in sequences {
        let s = raw.get_ref();
        let name = name(ctx, &s.name, &flows)?;
        if s.steps.is_empty() {
            return Err(ctx.error(
                raw.span(),
                format!("sequence `{name}` needs `steps = [\"function\", ...]`"),
            ));
        }
        let steps = s
            .steps
            .iter()
            .map(|f| super::function_index(ctx, f, functions))
            .collect::<Result<_, _>>()?;
        flows.push(Flow {
            name,
            kind: FlowKind::Sequence(steps),
            events: super::subscriptions(ctx, &s.events)?,
            reply: reply(ctx, &s.reply)?,
        });
    }
    for raw in parallels {
        let p = raw.get_ref();
        let name = name(ctx, &p.name, &flows)?;
        if p.branches.is_empty() {
            return Err(ctx.error(
                raw.span(),
                format!(
                    "parallel `{name}` needs `branches = [{{ subscriber = \"function\" }}, ...]`"
                ),
            ));
        }
        let branches = p
            .branches
            .iter()
            .map(|b| {
                let b = b.get_ref();
                Ok(Branch {
                    subscriber: super::function_index(ctx, &b.subscriber, functions)?,
                    filter: b
                        .filter
                        .as_ref()
                        .map(|f| super::function_index(ctx, f, functions))
                        .transpose()?,
                })
            })
            .collect::<Result<_, ManifestError>>()?;
        flows.push(Flow {
            name,
            kind: FlowKind::Parallel(branches),
            events: super::subscriptions(ctx, &p.events)?,
            reply: reply(ctx, &p.reply)?,
        });
    }
    Ok(flows)
}
