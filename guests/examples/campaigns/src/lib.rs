//! Campaigns with a lifecycle, in the `campaigns` key-value store; each state change emits
//! a CloudEvent (`campaign.scheduled`, `campaign.launched`, `campaign.finished`) that the
//! notification service (and anyone else) subscribes to.
//!
//! ```text
//! draft ──schedule──▶ scheduled ──launch──▶ active ──finish──▶ finished
//! ```
//!
//! - `POST /campaigns` `{"name", "channels"?}` → 201, a draft
//! - `GET /campaigns`, `GET /campaigns/{id}`
//! - `POST /campaigns/{id}/schedule|launch|finish` → the campaign in its new state; 409 when
//!   the campaign is not in the state the step starts from
//!
//! Two versions answer differently, so a blue/green switch is visible: v1 shows
//! `{"id", "name", "status", "api_version": "v1"}`; v2 shows `state`, the `channels` and
//! the `history` of state changes, with `"api_version": "v2"`. Both read and write the
//! same records, so switching loses nothing.
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::{CloudEvent, Error, Request, Response, Router};

/// Which version of the API answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The blue revision.
    V1,
    /// The green revision.
    V2,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Campaign {
    id: String,
    name: String,
    status: String,
    channels: Vec<String>,
    history: Vec<Change>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    state: String,
    /// The request that made it.
    request_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCampaign {
    name: Option<String>,
    channels: Option<Vec<String>>,
}

const SOURCE: &str = "/campaigns-api";
const CHANNELS: [&str; 3] = ["email", "push", "sms"];
/// Each step: its name, the state it starts from, the state it ends in, the event type.
const STEPS: [(&str, &str, &str, &str); 3] = [
    ("schedule", "draft", "scheduled", "campaign.scheduled"),
    ("launch", "scheduled", "active", "campaign.launched"),
    ("finish", "active", "finished", "campaign.finished"),
];

fn store() -> Result<Store, Error> {
    Store::open("campaigns")
}

fn key(id: &str) -> String {
    format!("campaign:{id}")
}

fn show(c: &Campaign, version: Version) -> Value {
    match version {
        Version::V1 => {
            json!({ "id": c.id, "name": c.name, "status": c.status, "api_version": "v1" })
        }
        Version::V2 => json!({
            "id": c.id, "name": c.name, "state": c.status, "channels": c.channels,
            "history": c.history, "api_version": "v2",
        }),
    }
}

fn invalid(field: &str, message: &str) -> Response {
    Response::json(
        422,
        &json!({ "error": format!("{field}: {message}"), "field": field }),
    )
}

fn load(store: &Store, id: &str) -> Result<Campaign, Error> {
    store
        .get_json(&key(id))?
        .ok_or_else(|| Error::not_found(format!("no campaign has id {id}")))
}

fn request_id(req: &Request) -> String {
    req.header("x-request-id").unwrap_or_default().to_string()
}

fn create(req: Request, version: Version) -> Result<Response, Error> {
    let new: NewCampaign = req.json()?;
    let name = match new.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() && n.len() <= 200 => n.to_string(),
        _ => return Ok(invalid("name", "is required, 1 to 200 characters")),
    };
    let channels = new.channels.unwrap_or_else(|| vec!["email".to_string()]);
    if let Some(bad) = channels.iter().find(|c| !CHANNELS.contains(&c.as_str())) {
        return Ok(invalid(
            "channels",
            &format!("{bad:?} is not one of {CHANNELS:?}"),
        ));
    }
    let store = store()?;
    let id = format!("cmp-{:05}", store.increment("campaigns:next-id", 1)?);
    let campaign = Campaign {
        id: id.clone(),
        name,
        status: "draft".to_string(),
        channels,
        history: vec![Change {
            state: "draft".to_string(),
            request_id: request_id(&req),
        }],
    };
    store.set_json(&key(&id), &campaign)?;
    Ok(Response::json(201, &show(&campaign, version))
        .with_header("location", format!("/campaigns/{id}")))
}

fn step(req: Request, version: Version) -> Result<Response, Error> {
    let id = req.param("id").unwrap_or_default().to_string();
    let action = req.param("action").unwrap_or_default().to_string();
    let Some(&(_, from, to, ty)) = STEPS.iter().find(|(name, ..)| *name == action) else {
        return Err(Error::not_found(format!(
            "no step {action:?}; the steps are schedule, launch and finish"
        )));
    };
    let store = store()?;
    let before = load(&store, &id)?;
    if before.status != from {
        return Err(Error::new(
            409,
            format!(
                "campaign {id} is {}; {action} needs it {from}",
                before.status
            ),
        ));
    }
    let mut after = before.clone();
    after.status = to.to_string();
    after.history.push(Change {
        state: to.to_string(),
        request_id: request_id(&req),
    });
    store.set_json(&key(&id), &after)?;
    let event = CloudEvent::new(ty, SOURCE)
        .with_id(format!("{id}/{to}"))
        .with_subject(id.clone())
        .with_json(&json!({ "campaign_id": id, "name": after.name, "state": to, "channels": after.channels }))?;
    // The change and its event go together: if the event cannot be sent, undo the change
    // and let the client retry.
    if let Err(e) = wasmfn_sdk::emit(event) {
        store.set_json(&key(&id), &before)?;
        return Err(Error::retry(format!(
            "campaign {id} was not changed: {}",
            e.message()
        )));
    }
    Ok(Response::json(200, &show(&after, version)))
}

fn list(version: Version) -> Result<Response, Error> {
    let store = store()?;
    let mut keys: Vec<String> = store
        .keys()?
        .into_iter()
        .filter(|k| k.starts_with("campaign:"))
        .collect();
    keys.sort();
    let campaigns: Vec<Value> = store
        .get_many(&keys)?
        .into_iter()
        .flatten()
        .filter_map(|b| serde_json::from_slice::<Campaign>(&b).ok())
        .map(|c| show(&c, version))
        .collect();
    Ok(Response::json(200, &json!({ "campaigns": campaigns })))
}

/// Answers one request as `version` of the API.
pub fn handle(req: Request, version: Version) -> Response {
    Router::new()
        .post("/campaigns", move |req: Request| create(req, version))
        .get("/campaigns", move |_| list(version))
        .get("/campaigns/:id", move |req: Request| {
            let id = req.param("id").unwrap_or_default().to_string();
            store()
                .and_then(|s| load(&s, &id))
                .map(|c| Response::json(200, &show(&c, version)))
        })
        .post("/campaigns/:id/:action", move |req: Request| {
            step(req, version)
        })
        .handle(req)
}
