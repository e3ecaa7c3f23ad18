//! A Spin app of the Spin 3 line: spin-sdk 5.2 (WASI 0.2, synchronous), its Router, its
//! key-value store and variables (`fermyon:spin/key-value@2.0.0`, `variables@2.0.0`), and
//! nothing of wasmfn, served from its own `spin.toml`:
//!
//! - `GET /counter` → a greeting from the component variable `greeting`; `GET
//!   /counter/config/greeting` → the same variable through the `wasi:config` draft
//!   (`wasi:config/store@0.2.0-draft-2024-09-27`) that spin-sdk 5.2 also binds;
//! - `GET /counter/:name` → counts one more `name` in the `default` store;
//! - `GET /counter/keys/all` → the store's keys;
//! - `GET /counter/bench/get?n=N` (or `/counter/bench/none`) → N gets of one key, for the
//!   benchmarks (benches/README.md);
//! - `GET /counter/route/info` → what Spin's request headers say about the route; and
//!   the same for `GET /shelves/:shelf/...` (parameters, then a wildcard);
//! - `GET /greet/:name` (a route with a parameter, in spin.toml and in the Router) → a
//!   greeting for the name, and the `spin-path-match-name` header Spin sets for it;
//! - `GET /counter/sql/v2?note=T` → stores a note in the `default` SQLite database through
//!   `fermyon:spin/sqlite@2.0.0` (a parameter, never SQL) and answers how many there are;
//!   `GET /counter/sql/v3?note=T` → the same through `spin:sqlite@3.0.0`, answering the
//!   new row's id and the rows changed;
//! - `GET /counter/redis/:key` → `INCR key` and `HINCRBY counts:key hits 1` on the Redis at
//!   the variable `redis_address` (`fermyon:spin/redis@2.0.0`);
//! - `GET /counter/pg/v3?n=N` and `/counter/pg/v4?n=N` → N + 1 and a UUID column's type,
//!   computed by the PostgreSQL at the variable `database_url` through `spin:postgres@3.0.0`
//!   and `@4.0.0`.
use spin_sdk::http::{IntoResponse, Params, Request, Response, Router};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;

#[http_component]
fn handle(request: Request) -> Response {
    let mut router = Router::new();
    router.get("/counter", greet);
    router.get("/counter/keys/all", keys);
    router.get("/counter/config/:name", config);
    router.get("/counter/bench/:op", bench);
    router.get("/counter/route/info", route_info);
    router.get("/counter/sql/:version", sql);
    router.get("/counter/redis/:key", redis);
    router.get("/counter/pg/:version", postgres);
    router.get("/counter/:name", count);
    router.get("/greet/:name", greet_by_name);
    router.get("/shelves/:shelf/*", route_info);
    router.handle(request)
}

fn greet(_request: Request, _params: Params) -> anyhow::Result<impl IntoResponse> {
    let greeting = spin_sdk::variables::get("greeting")?;
    Ok(Response::new(200, format!("{greeting} from spin-sdk 5\n")))
}

fn count(_request: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let name = params.get("name").unwrap_or("visits");
    let store = Store::open_default()?;
    let n = match store.get(name)? {
        Some(bytes) => String::from_utf8(bytes)?.parse::<u64>()? + 1,
        None => 1,
    };
    store.set(name, n.to_string().as_bytes())?;
    Ok(Response::new(200, format!("{name} {n}\n")))
}

fn keys(_request: Request, _params: Params) -> anyhow::Result<impl IntoResponse> {
    let mut keys = Store::open_default()?.get_keys()?;
    keys.sort();
    Ok(Response::new(200, format!("{}\n", keys.join(","))))
}

/// A request header as text, `(none)` when absent.
fn header(request: &Request, name: &str) -> String {
    request
        .header(name)
        .and_then(|v| v.as_str())
        .unwrap_or("(none)")
        .to_string()
}

fn route_info(request: Request, _params: Params) -> anyhow::Result<impl IntoResponse> {
    let lines: Vec<String> = [
        "spin-full-url",
        "spin-path-info",
        "spin-matched-route",
        "spin-component-route",
        "spin-raw-component-route",
        "spin-base-path",
        "spin-path-match-shelf",
    ]
    .iter()
    .map(|name| format!("{name}: {}", header(&request, name)))
    .collect();
    Ok(Response::new(200, lines.join("\n") + "\n"))
}

fn greet_by_name(request: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let name = params.get("name").unwrap_or("nobody");
    Ok(Response::new(
        200,
        format!(
            "hello {name} (spin-path-match-name: {}, route {})\n",
            header(&request, "spin-path-match-name"),
            header(&request, "spin-matched-route")
        ),
    ))
}

fn bench(request: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let n: u32 = request
        .query()
        .split('&')
        .find_map(|pair| pair.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let store = Store::open_default()?;
    match params.get("op") {
        Some("get") => {
            store.set("bench:get", &[7u8; 64])?;
            for _ in 0..n {
                store.get("bench:get")?;
            }
        }
        Some("none") => {}
        other => return Ok(Response::new(400, format!("op {other:?}\n"))),
    }
    Ok(Response::new(200, format!("{n}\n")))
}

fn config(_request: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let name = params.get("name").unwrap_or_default();
    Ok(match spin_sdk::wit::wasi::config::store::get(name) {
        Ok(Some(value)) => Response::new(200, format!("{value}\n")),
        Ok(None) => Response::new(404, format!("no variable {name}\n")),
        Err(e) => Response::new(500, format!("{e:?}\n")),
    })
}

/// The query parameter `name`, as given.
fn query_param(request: &Request, name: &str) -> Option<String> {
    request.query().split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn sql(request: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let note = query_param(&request, "note").unwrap_or_default();
    const CREATE: &str =
        "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)";
    const INSERT: &str = "INSERT INTO notes (text) VALUES (?)";
    match params.get("version") {
        Some("v2") => {
            use spin_sdk::sqlite::{Connection, Value};
            let db = Connection::open_default()?;
            db.execute(CREATE, &[])?;
            db.execute(INSERT, &[Value::Text(note)])?;
            let count = db.execute("SELECT count(*) FROM notes", &[])?;
            let n: i64 = count.rows[0].get(0).unwrap_or_default();
            Ok(Response::new(200, format!("v2 notes {n}\n")))
        }
        Some("v3") => {
            use spin_sdk::sqlite3::{Connection, Value};
            let db = Connection::open_default()?;
            db.execute(CREATE, &[])?;
            db.execute(INSERT, &[Value::Text(note)])?;
            let (id, changes) = (db.last_insert_rowid(), db.changes());
            Ok(Response::new(
                200,
                format!("v3 rowid {id} changes {changes}\n"),
            ))
        }
        other => Ok(Response::new(404, format!("no SQLite version {other:?}\n"))),
    }
}

fn redis(_request: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
    let key = params.get("key").unwrap_or("visits");
    let address = spin_sdk::variables::get("redis_address")?;
    let redis = Connection::open(&address)?;
    let n = redis.incr(key)?;
    let hits = redis.execute(
        "HINCRBY",
        &[
            RedisParameter::Binary(format!("counts:{key}").into_bytes()),
            RedisParameter::Binary(b"hits".to_vec()),
            RedisParameter::Int64(1),
        ],
    )?;
    let hits = match hits.first() {
        Some(RedisResult::Int64(h)) => *h,
        other => anyhow::bail!("HINCRBY answered {other:?}"),
    };
    Ok(Response::new(200, format!("incr {n} hits {hits}\n")))
}

fn postgres(request: Request, params: Params) -> anyhow::Result<impl IntoResponse> {
    let n: i32 = query_param(&request, "n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let address = spin_sdk::variables::get("database_url")?;
    const SQL: &str = "SELECT $1::int4 + 1, gen_random_uuid()";
    let answer = match params.get("version") {
        Some("v3") => {
            use spin_sdk::pg3::{Connection, DbValue, ParameterValue};
            let rows = Connection::open(&address)?.query(SQL, &[ParameterValue::Int32(n)])?;
            let sum = match &rows.rows[0][0] {
                DbValue::Int32(sum) => *sum,
                other => anyhow::bail!("{other:?}"),
            };
            format!(
                "{sum} {:?} {:?}",
                rows.columns[1].data_type, rows.rows[0][1]
            )
        }
        Some("v4") => {
            use spin_sdk::pg4::{Connection, DbValue, ParameterValue};
            let rows = Connection::open(&address)?.query(SQL, &[ParameterValue::Int32(n)])?;
            let sum = match &rows.rows[0][0] {
                DbValue::Int32(sum) => *sum,
                other => anyhow::bail!("{other:?}"),
            };
            let uuid = matches!(rows.rows[0][1], DbValue::Uuid(_));
            format!("{sum} {:?} uuid: {uuid}", rows.columns[1].data_type)
        }
        other => return Ok(Response::new(404, format!("no version {other:?}\n"))),
    };
    Ok(Response::new(200, format!("{answer}\n")))
}
