//! The deployment seed's `users-api`: users in a SQL table, on PostgreSQL where the
//! variable `database_url` names one (on Knative, `DATABASE_URL` from the seed's
//! `database-credentials` Secret), else in the function's `default` SQLite database.
//!
//! - `POST /users` `{"email", "name"}` → 201 with the user and its `id`; 409 when the email
//!   is taken; 422 naming the field that is wrong
//! - `GET /users/{id}` → the user, or 404
//! - `PUT /users/{id}` `{"email"?, "name"?}` → the updated user (same checks)
//! - `DELETE /users/{id}` → 204, or 404
//! - `GET /users?limit=20&after={id}` → `{"users": [...], "next": id or null}`, by id
//! - `GET /users/health/live`, `/users/health/ready` (ready reaches the database)
//!
//! An email belongs to one user: the table's unique constraint decides, so two requests
//! racing for one address cannot both win, and nothing is left held by one that died.
use serde::{Deserialize, Serialize};
use serde_json::json;
use wasmfn_sdk::sql::{Database, SqlError, Value};
use wasmfn_sdk::{Error, Json, Request, Response, Router};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: String,
    email: String,
    name: String,
    created_at: String,
}

/// A row of `users`.
#[derive(Deserialize)]
struct Row {
    seq: i64,
    email: String,
    name: String,
    created_at: String,
}

impl From<Row> for User {
    fn from(r: Row) -> Self {
        User {
            id: id(r.seq),
            email: r.email,
            name: r.name,
            created_at: r.created_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    email: Option<String>,
    name: Option<String>,
}

const MAX_PAGE: usize = 100;
const COLUMNS: &str = "seq, email, name, created_at";

/// The users table; its key's DDL differs between the two databases.
fn database() -> Result<Database, Error> {
    let db = Database::postgres_or_sqlite("database_url", "default")?;
    let key = if db.is_postgres() {
        "seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    } else {
        "seq INTEGER PRIMARY KEY AUTOINCREMENT"
    };
    let schema = format!(
        "CREATE TABLE IF NOT EXISTS users ({key}, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, created_at TEXT NOT NULL)"
    );
    match db.execute(&schema, &[]) {
        // Two first requests creating the table at once: one of them did.
        Ok(_) => Ok(db),
        Err(e) if e.is_constraint_violation() => Ok(db),
        Err(e) => Err(e.into()),
    }
}

/// `usr-000042` for row 42: ids keep their creation order when compared as text.
fn id(seq: i64) -> String {
    format!("usr-{seq:06}")
}

fn seq(id: &str) -> Option<i64> {
    id.strip_prefix("usr-")?.parse().ok()
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

/// 409 when the unique email refused the write; any other failure as it is.
fn taken(email: &str) -> impl FnOnce(SqlError) -> Error + '_ {
    move |e| {
        if e.is_constraint_violation() {
            Error::new(409, format!("email {email} is already registered"))
        } else {
            e.into()
        }
    }
}

fn load(db: &Database, id: &str) -> Result<User, Error> {
    let missing = || Error::not_found(format!("no user has id {id}"));
    let seq = seq(id).ok_or_else(missing)?;
    let rows: Vec<Row> = db.query_as(
        &format!("SELECT {COLUMNS} FROM users WHERE seq = $1"),
        &[seq.into()],
    )?;
    rows.into_iter().next().map(User::from).ok_or_else(missing)
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
    let db = database()?;
    let rows: Vec<Row> = db
        .query_as(
            &format!(
                "INSERT INTO users (email, name, created_at) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
            ),
            &[email.as_str().into(), name.into(), now().into()],
        )
        .map_err(taken(&email))?;
    let user = User::from(
        rows.into_iter()
            .next()
            .ok_or_else(|| Error::internal("the insert returned no row"))?,
    );
    let location = format!("/users/{}", user.id);
    Ok(Response::json(201, &user).with_header("location", location))
}

fn update(req: Request) -> Result<Response, Error> {
    let id = req.param("id").unwrap_or_default().to_string();
    let change: Change = req.json()?;
    let db = database()?;
    let mut user = load(&db, &id)?;
    if let Some(name) = change.name {
        user.name = match check_name(&name) {
            Ok(n) => n,
            Err(r) => return Ok(r),
        };
    }
    if let Some(email) = change.email {
        user.email = match check_email(&email) {
            Ok(e) => e,
            Err(r) => return Ok(r),
        };
    }
    let changed = db
        .execute(
            "UPDATE users SET email = $1, name = $2 WHERE seq = $3",
            &[
                user.email.as_str().into(),
                user.name.as_str().into(),
                Value::from(seq(&id).unwrap_or_default()),
            ],
        )
        .map_err(taken(&user.email))?;
    if changed == 0 {
        return Err(Error::not_found(format!("no user has id {id}")));
    }
    Ok(Response::json(200, &user))
}

fn remove(req: Request) -> Result<Response, Error> {
    let id = req.param("id").unwrap_or_default().to_string();
    let db = database()?;
    let removed = match seq(&id) {
        Some(seq) => db.execute("DELETE FROM users WHERE seq = $1", &[seq.into()])?,
        None => 0,
    };
    if removed == 0 {
        return Err(Error::not_found(format!("no user has id {id}")));
    }
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
    let after = req
        .query_param("after")
        .map_or(Some(0), |a| seq(&a))
        .unwrap_or(0);
    let db = database()?;
    let rows: Vec<Row> = db.query_as(
        &format!("SELECT {COLUMNS} FROM users WHERE seq > $1 ORDER BY seq LIMIT $2"),
        &[after.into(), Value::from(limit as i64 + 1)],
    )?;
    let more = rows.len() > limit;
    let users: Vec<User> = rows.into_iter().take(limit).map(User::from).collect();
    let next = if more {
        users.last().map(|u| u.id.clone())
    } else {
        None
    };
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
                database()?.query("SELECT 1", &[])?;
                Ok(Json(json!({ "status": "ready" })))
            },
        )
        .post("/users", create)
        .get("/users", list)
        .get("/users/:id", |req: Request| {
            let id = req.param("id").unwrap_or_default().to_string();
            database().and_then(|db| load(&db, &id)).map(Json)
        })
        .put("/users/:id", update)
        .delete("/users/:id", remove)
        .handle(req)
}
