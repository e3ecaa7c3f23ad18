//! The deployment seed's `notification-service`: turns order, payment and campaign events
//! into notifications POSTed to a webhook (its `webhook_url` variable; a Secret on
//! Knative), once per event. Three versions serve at once (the seed's multi-version
//! support: v3 for new clients, v2 and v1 for existing ones), each posting the body of its
//! own API version ([`Version`]); they share the store, so an event redelivered to another
//! version is still notified once.
//!
//! - The webhook answering 5xx, or not answering, makes the delivery retryable: the host
//!   answers 503 and the Broker delivers the event again.
//! - A 4xx from the webhook rejects the event (the Broker dead-letters it): sending the
//!   same notification again would be refused again.
//! - A redelivered event is acknowledged without a second notification: each delivered
//!   event is remembered in the `notifications` store, for the last `dedupe_history`
//!   events (default 1,000), so the history stays bounded.
use serde_json::{Value, json};
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::{CloudEvent, Error, variables};

/// The API version whose webhook body a deployment posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `{"version": "v1", "text"}`: the message alone.
    V1,
    /// `{"version": "v2", "event_id", "type", "text"}`.
    V2,
    /// `{"version": "v3", "event_id", "type", "subject", "text", "data"}`.
    V3,
}

/// Notifies the webhook of `event` once, in `version`'s form.
pub fn notify(event: CloudEvent, version: Version) -> Result<(), Error> {
    let url = variables::get("webhook_url")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::reject("the webhook_url variable is not set"))?;
    let store = Store::open("notifications")?;
    // Ids are unique per source (CloudEvents), so both name the event.
    let key = format!("notified:{}:{}", event.source(), event.id());
    let done = format!("{key}:done");
    if store.exists(&done)? {
        return Ok(());
    }
    // One delivery at a time per event: a second one arriving while the first is still
    // talking to the webhook is asked to come back later. The claim lapses after a minute
    // or two, so an event whose host died mid-send is notified by a later redelivery.
    let Some(claim) = store.claim(&key, LEASE)? else {
        return Err(Error::retry(format!("event {} is being notified", event.id())).retry_after(1));
    };
    if store.exists(&done)? {
        claim.release(&store)?;
        return Ok(());
    }
    match send(&url, &event, version) {
        Ok(()) => {
            store.set(&done, "1")?;
            claim.release(&store)?;
            remember(&store, &key)
        }
        Err(e) => {
            claim.release(&store)?;
            Err(e)
        }
    }
}

/// Longer than this function's timeout (and its webhook call's), so a live send is never
/// overtaken.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

fn send(url: &str, event: &CloudEvent, version: Version) -> Result<(), Error> {
    let data: Value = event.json().unwrap_or(Value::Null);
    let text = text(event.ty(), &subject(event, &data), &data);
    let body = match version {
        Version::V1 => json!({ "version": "v1", "text": text }),
        Version::V2 => json!({
            "version": "v2",
            "event_id": event.id(),
            "type": event.ty(),
            "text": text,
        }),
        Version::V3 => json!({
            "version": "v3",
            "event_id": event.id(),
            "type": event.ty(),
            "subject": event.subject(),
            "text": text,
            "data": data,
        }),
    };
    let response = wasmfn_sdk::outbound::post(url, &body)
        .map_err(|e| Error::retry(format!("the webhook is unreachable: {}", e.message())))?;
    match response.status() {
        200..=299 => Ok(()),
        status @ 500.. => Err(Error::retry(format!("the webhook answered {status}"))),
        429 => Err(Error::retry("the webhook answered 429")),
        status => Err(Error::reject(format!(
            "the webhook refused the notification with {status}"
        ))),
    }
}

/// What the event is about: its subject, else the order or campaign its data names.
fn subject(event: &CloudEvent, data: &Value) -> String {
    event
        .subject()
        .or_else(|| data["order_id"].as_str())
        .or_else(|| data["campaign_id"].as_str())
        .unwrap_or("?")
        .to_string()
}

/// What a person reads.
fn text(ty: &str, subject: &str, data: &Value) -> String {
    let name = data["name"].as_str().unwrap_or(subject);
    let reason = data["reason"].as_str().unwrap_or("no reason given");
    match ty {
        "order.completed" => format!("Order {subject} is confirmed."),
        "order.failed" => format!("Order {subject} could not be completed: {reason}."),
        "payment.failed" => format!("Payment for order {subject} was declined: {reason}."),
        "campaign.scheduled" => format!("Campaign {name} is scheduled."),
        "campaign.launched" => format!("Campaign {name} is live."),
        "campaign.finished" => format!("Campaign {name} has finished."),
        other => format!("{other} for {subject}."),
    }
}

/// Keeps the last `dedupe_history` delivered events in a ring, forgetting the oldest.
fn remember(store: &Store, key: &str) -> Result<(), Error> {
    let capacity: u64 = variables::get("dedupe_history")
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1_000);
    let slot = format!(
        "notified-ring:{}",
        store.increment("notified-ring:next", 1)? % capacity
    );
    if let Some(old) = store.get(&slot)?
        && let Ok(old) = String::from_utf8(old)
        && old != key
    {
        store.delete(&format!("{old}:done"))?;
    }
    store.set(&slot, key)
}
