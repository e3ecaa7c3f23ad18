//! The deployment seed's `users-api`: users as JSON resources in the `users` key-value
//! store (embedded on a laptop, Redis on Knative, where pods share it).
//!
//! - `POST /users` `{"email", "name"}` → 201 with the user and its `id`; 409 when the email
//!   is taken; 422 naming the field that is wrong
//! - `GET /users/{id}` → the user, or 404
//! - `PUT /users/{id}` `{"email"?, "name"?}` → the updated user (same checks)
//! - `DELETE /users/{id}` → 204, or 404
//! - `GET /users?limit=20&after={id}` → `{"users": [...], "next": id or null}`, by id
//! - `GET /users/health/live`, `/users/health/ready` (ready opens the store)
//!
//! An email belongs to one user: a request takes it under a claim (`Store::claim`) held
//! until the user's record has it, so two requests racing for one address cannot both win,
//! and one that died mid-way blocks the address only until its claim lapses.
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasmfn_sdk::kv::{Claim, Store};
use wasmfn_sdk::{Error, Json, Request, Response, Router};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: String,
    email: String,
    name: String,
    created_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    email: Option<String>,
    name: Option<String>,
}

const USER: &str = "user:";
const EMAIL: &str = "email:";
const MAX_PAGE: usize = 100;

fn store() -> Result<Store, Error> {
    Store::open("users")
}

/// A 422 that names the field, as `{"error", "field"}`.
fn invalid(field: &str, message: &str) -> Response {
    Response::json(
        422,
        &json!({ "error": format!("{field}: {message}"), "field": field }),
    )
}

fn check_email(email: &str) -> Result<String, Response> {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.contains(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(invalid(
            "email",
            "must be an email address like ada@example.com",
        ))
    }
}

fn check_name(name: &str) -> Result<String, Response> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("name", "must be 1 to 200 characters"));
    }
    Ok(name.to_string())
}

/// How long registering an address may take before another request may finish it for
/// itself: longer than this function's timeout.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The id of the user who holds `email`: the one its key names, if that user's record has
/// the address. A key naming a user without it is what a request that died mid-way left
/// behind, and holds nothing.
fn holder(store: &Store, email: &str) -> Result<Option<String>, Error> {
    let Some(id) = store.get(&format!("{EMAIL}{email}"))? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&id).into_owned();
    let user: Option<User> = store.get_json(&format!("{USER}{id}"))?;
    Ok(user.filter(|u| u.email == email).map(|_| id))
}

/// Takes `email` for `id`, or None when another user holds it or is taking it right now.
/// The claim is held until the user's record has the address, then released, so racing
/// registrations cannot both succeed, and one that died mid-way blocks the address only
/// until its claim lapses.
fn claim(store: &Store, email: &str, id: &str) -> Result<Option<Claim>, Error> {
    let taken = |store: &Store| -> Result<bool, Error> {
        Ok(holder(store, email)?.is_some_and(|holder| holder != id))
    };
    if taken(store)? {
        return Ok(None);
    }
    let Some(claim) = store.claim(&format!("{EMAIL}{email}"), LEASE)? else {
        return Ok(None);
    };
    if taken(store)? {
        claim.release(store)?;
        return Ok(None);
    }
    store.set(&format!("{EMAIL}{email}"), id)?;
    Ok(Some(claim))
}

/// Frees `email` if `id` holds it.
fn release(store: &Store, email: &str, id: &str) -> Result<(), Error> {
    let key = format!("{EMAIL}{email}");
    if store
        .get(&key)?
        .is_some_and(|holder| holder == id.as_bytes())
    {
        store.delete(&key)?;
    }
    Ok(())
}

fn load(store: &Store, id: &str) -> Result<User, Error> {
    store
        .get_json(&format!("{USER}{id}"))?
        .ok_or_else(|| Error::not_found(format!("no user has id {id}")))
}

/// Now, as RFC 3339 (the guest's clock is WASI's wall clock).
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn create(req: Request) -> Result<Response, Error> {
    let change: Change = req.json()?;
    let Some(email) = change.email else {
        return Ok(invalid("email", "is required"));
    };
    let Some(name) = change.name else {
        return Ok(invalid("name", "is required"));
    };
    let email = match check_email(&email) {
        Ok(e) => e,
        Err(r) => return Ok(r),
    };
    let name = match check_name(&name) {
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let store = store()?;
    let id = format!("usr-{:06}", store.increment("users:next-id", 1)?);
    let Some(claim) = claim(&store, &email, &id)? else {
        return Err(Error::new(
            409,
            format!("email {email} is already registered"),
        ));
    };
    let user = User {
        id: id.clone(),
        email,
        name,
        created_at: now(),
    };
    store.set_json(&format!("{USER}{id}"), &user)?;
    claim.release(&store)?;
    Ok(Response::json(201, &user).with_header("location", format!("/users/{id}")))
}

fn update(req: Request) -> Result<Response, Error> {
    let id = req.param("id").unwrap_or_default().to_string();
    let change: Change = req.json()?;
    let store = store()?;
    let mut user = load(&store, &id)?;
    if let Some(name) = change.name {
        user.name = match check_name(&name) {
            Ok(n) => n,
            Err(r) => return Ok(r),
        };
    }
    if let Some(email) = change.email {
        let email = match check_email(&email) {
            Ok(e) => e,
            Err(r) => return Ok(r),
        };
        if email != user.email {
            let Some(claim) = claim(&store, &email, &id)? else {
                return Err(Error::new(
                    409,
                    format!("email {email} is already registered"),
                ));
            };
            let old = std::mem::replace(&mut user.email, email);
            store.set_json(&format!("{USER}{id}"), &user)?;
            claim.release(&store)?;
            release(&store, &old, &id)?;
            return Ok(Response::json(200, &user));
        }
    }
    store.set_json(&format!("{USER}{id}"), &user)?;
    Ok(Response::json(200, &user))
}

fn remove(req: Request) -> Result<Response, Error> {
    let id = req.param("id").unwrap_or_default().to_string();
    let store = store()?;
    let user = load(&store, &id)?;
    store.delete(&format!("{USER}{id}"))?;
    release(&store, &user.email, &id)?;
    Ok(Response::new(204))
}

fn list(req: Request) -> Result<Response, Error> {
    let limit = match req.query_param("limit") {
        None => 20,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Ok(invalid(
                    "limit",
                    &format!("must be a number from 1 to {MAX_PAGE}"),
                ));
            }
        },
    };
    let after = req.query_param("after").unwrap_or_default();
    let store = store()?;
    // Ids are zero-padded, so their order is their creation order.
    let mut ids: Vec<String> = store
        .keys()?
        .into_iter()
        .filter_map(|k| k.strip_prefix(USER).map(str::to_string))
        .filter(|id| id.as_str() > after.as_str())
        .collect();
    ids.sort();
    let more = ids.len() > limit;
    ids.truncate(limit);
    let keys: Vec<String> = ids.iter().map(|id| format!("{USER}{id}")).collect();
    let users: Vec<User> = store
        .get_many(&keys)?
        .into_iter()
        .flatten()
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    let next = if more { ids.last().cloned() } else { None };
    Ok(Response::json(
        200,
        &json!({ "users": users, "next": next }),
    ))
}

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .get("/users/health/live", |_| Json(json!({ "status": "alive" })))
        .get(
            "/users/health/ready",
            |_| -> Result<Json<serde_json::Value>, Error> {
                store()?;
                Ok(Json(json!({ "status": "ready" })))
            },
        )
        .post("/users", create)
        .get("/users", list)
        .get("/users/:id", |req: Request| {
            let id = req.param("id").unwrap_or_default().to_string();
            store().and_then(|s| load(&s, &id)).map(Json)
        })
        .put("/users/:id", update)
        .delete("/users/:id", remove)
        .handle(req)
}
