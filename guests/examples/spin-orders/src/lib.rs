//! A Spin app written with spin-sdk 7 (WASI 0.3) and nothing of wasmfn: orders in the
//! `default` SQLite database, and campaign metrics aggregated in Redis hashes with expiry,
//! as the patterns seed's aggregator keeps them (`HINCRBY`, `HINCRBYFLOAT`, `EXPIRE`,
//! `HGETALL`).
//!
//! - `POST /orders?customer=C&total=T` → stores an order (parameters bound, never spliced
//!   into SQL), answers `201` with its id;
//! - `GET /orders/:id` → `id customer total`, or 404; `GET /orders` → every order, a line
//!   each; `POST /orders/transfer?from=A&to=B` → moves every order of A to B in one
//!   transaction and answers how many moved;
//! - `POST /metrics/:campaign?clicks=N&spend=X` → adds to the campaign's hash for the
//!   current window, which expires after an hour; `GET /metrics/:campaign` → its fields,
//!   sorted, a line each; `GET /metrics/:campaign/raw?cmd=...` runs one command for the
//!   tests (`INCR`, `SADD`, ...) through the typed helpers; `GET
//!   /metrics/bench/run?op=hincrby|none&n=N` → N `HINCRBY`s of one field, for the
//!   benchmarks (benches/README.md).
//!
//! A database or Redis error is answered 500 with the error's text.
use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::redis::{Connection as Redis, RedisParameter, RedisResult};
use spin_sdk::sqlite::{Connection, Value};

type Reply = (StatusCode, String);

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let param = |name: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_string())
        })
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (request.method(), segments.as_slice()) {
        (&Method::POST, ["orders"]) => {
            let total = param("total").and_then(|t| t.parse::<f64>().ok());
            match (param("customer"), total) {
                (Some(customer), Some(total)) => create_order(&customer, total).await,
                _ => Ok((
                    StatusCode::BAD_REQUEST,
                    "customer and total are required\n".into(),
                )),
            }
        }
        (&Method::GET, ["orders"]) => list_orders().await,
        (&Method::GET, ["orders", id]) => match id.parse::<i64>() {
            Ok(id) => get_order(id).await,
            Err(_) => Ok((StatusCode::BAD_REQUEST, format!("{id} is not an id\n"))),
        },
        (&Method::POST, ["orders", "transfer"]) => match (param("from"), param("to")) {
            (Some(from), Some(to)) => transfer(&from, &to).await,
            _ => Ok((StatusCode::BAD_REQUEST, "from and to are required\n".into())),
        },
        (&Method::POST, ["metrics", campaign]) => {
            let clicks = param("clicks").and_then(|c| c.parse().ok()).unwrap_or(0);
            let spend = param("spend").unwrap_or_else(|| "0".into());
            record(campaign, clicks, &spend).await
        }
        (&Method::GET, ["metrics", "bench", "run"]) => {
            let n = param("n").and_then(|n| n.parse().ok()).unwrap_or(1);
            bench(param("op").as_deref(), n).await
        }
        (&Method::GET, ["metrics", campaign]) => metrics(campaign).await,
        (&Method::GET, ["metrics", key, "raw"]) => raw(key, param("cmd").as_deref()).await,
        _ => Ok((StatusCode::NOT_FOUND, format!("nothing at {path}\n"))),
    };
    result.unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {e}\n")))
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

async fn database() -> Result<Connection> {
    let db = Connection::open_default().await?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY AUTOINCREMENT, customer TEXT NOT NULL, total REAL NOT NULL)",
        [],
    )
    .await?
    .result()
    .await?;
    Ok(db)
}

async fn create_order(customer: &str, total: f64) -> Result<Reply> {
    let db = database().await?;
    db.execute(
        "INSERT INTO orders (customer, total) VALUES (?, ?)",
        [Value::text(customer), Value::real(total)],
    )
    .await?
    .result()
    .await?;
    let id = db.last_insert_rowid().await;
    Ok((StatusCode::CREATED, format!("{id}\n")))
}

fn line(row: &spin_sdk::sqlite::RowResult) -> String {
    let id: i64 = row.get(0).unwrap_or_default();
    let customer: &str = row.get(1).unwrap_or_default();
    let total: f64 = row.get(2).unwrap_or_default();
    format!("{id} {customer} {total}\n")
}

async fn get_order(id: i64) -> Result<Reply> {
    let db = database().await?;
    let rows = db
        .execute(
            "SELECT id, customer, total FROM orders WHERE id = ?",
            [Value::integer(id)],
        )
        .await?
        .collect()
        .await?;
    Ok(match rows.first() {
        Some(row) => (StatusCode::OK, line(row)),
        None => (StatusCode::NOT_FOUND, format!("no order {id}\n")),
    })
}

async fn list_orders() -> Result<Reply> {
    let db = database().await?;
    let rows = db
        .execute("SELECT id, customer, total FROM orders ORDER BY id", [])
        .await?
        .collect()
        .await?;
    Ok((StatusCode::OK, rows.iter().map(line).collect()))
}

async fn transfer(from: &str, to: &str) -> Result<Reply> {
    let db = database().await?;
    db.execute("BEGIN", []).await?.result().await?;
    db.execute(
        "UPDATE orders SET customer = ? WHERE customer = ?",
        [Value::text(to), Value::text(from)],
    )
    .await?
    .result()
    .await?;
    let moved = db.changes().await;
    db.execute("COMMIT", []).await?.result().await?;
    Ok((StatusCode::OK, format!("{moved}\n")))
}

async fn redis() -> Result<Redis> {
    let address = spin_sdk::variables::get("redis_address").await?;
    Ok(Redis::open(address).await?)
}

/// The hour this request counts in: metrics are kept per window, as the seed's aggregator
/// keeps them.
fn window_key(campaign: &str) -> String {
    let hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 3600)
        .unwrap_or_default();
    format!("metrics:{campaign}:{hour}")
}

async fn record(campaign: &str, clicks: i64, spend: &str) -> Result<Reply> {
    let redis = redis().await?;
    let key = window_key(campaign);
    let bin = |s: &str| RedisParameter::Binary(s.as_bytes().to_vec());
    redis
        .execute(
            "HINCRBY",
            [bin(&key), bin("clicks"), RedisParameter::Int64(clicks)],
        )
        .await?;
    redis
        .execute("HINCRBYFLOAT", [bin(&key), bin("spend"), bin(spend)])
        .await?;
    redis
        .execute("EXPIRE", [bin(&key), RedisParameter::Int64(3600)])
        .await?;
    Ok((StatusCode::OK, "recorded\n".into()))
}

fn text(result: &RedisResult) -> String {
    match result {
        RedisResult::Nil => "(nil)".into(),
        RedisResult::Status(s) => s.clone(),
        RedisResult::Int64(i) => i.to_string(),
        RedisResult::Binary(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

async fn metrics(campaign: &str) -> Result<Reply> {
    let redis = redis().await?;
    let key = window_key(campaign);
    let fields = redis
        .execute("HGETALL", [RedisParameter::Binary(key.into_bytes())])
        .await?;
    let mut lines: Vec<String> = fields
        .chunks(2)
        .map(|pair| {
            format!(
                "{}={}",
                text(&pair[0]),
                pair.get(1).map(text).unwrap_or_default()
            )
        })
        .collect();
    lines.sort();
    Ok((
        StatusCode::OK,
        lines.iter().map(|l| format!("{l}\n")).collect(),
    ))
}

async fn raw(key: &str, cmd: Option<&str>) -> Result<Reply> {
    let redis = redis().await?;
    let answer = match cmd {
        Some("incr") => redis.incr(key).await?.to_string(),
        Some("set") => {
            redis.set(key, b"v").await?;
            "OK".into()
        }
        Some("get") => match redis.get(key).await? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => "(nil)".into(),
        },
        Some("sadd") => redis.sadd(key, ["a", "b"]).await?.to_string(),
        Some("smembers") => {
            let mut members = redis.smembers(key).await?;
            members.sort();
            members.join(",")
        }
        Some("srem") => redis.srem(key, ["a"]).await?.to_string(),
        Some("del") => redis.del([key]).await?.to_string(),
        Some("publish") => {
            redis.publish(key, b"hello").await?;
            "published".into()
        }
        other => return Ok((StatusCode::BAD_REQUEST, format!("cmd {other:?}\n"))),
    };
    Ok((StatusCode::OK, format!("{answer}\n")))
}

async fn bench(op: Option<&str>, n: u32) -> Result<Reply> {
    let redis = redis().await?;
    let bin = |s: &str| RedisParameter::Binary(s.as_bytes().to_vec());
    match op {
        Some("hincrby") => {
            for _ in 0..n {
                redis
                    .execute(
                        "HINCRBY",
                        [
                            bin("metrics:bench"),
                            bin("clicks"),
                            RedisParameter::Int64(1),
                        ],
                    )
                    .await?;
            }
        }
        Some("none") => {}
        other => return Ok((StatusCode::BAD_REQUEST, format!("op {other:?}\n"))),
    }
    Ok((StatusCode::OK, format!("{n}\n")))
}
