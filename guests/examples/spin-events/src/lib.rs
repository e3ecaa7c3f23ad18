//! The patterns seed's event store, written as a Spin app with spin-sdk 7 (WASI 0.3) on
//! PostgreSQL, nothing of wasmfn: an `events` table keyed by aggregate and version, whose
//! unique constraint does the optimistic concurrency (two writers of one version: one wins,
//! the other is told the version exists).
//!
//! - `POST /events/setup` → creates the table (once);
//! - `POST /events/:aggregate?version=N&type=T` with JSON data → appends event N of the
//!   stream: `201`, or `409` when version N exists (SQLSTATE 23505), `400` for data that is
//!   not JSON;
//! - `GET /events/:aggregate?after=N` → the stream's events after version N, in order, a
//!   line each (`version type data`): a replay;
//! - `GET /events/debug/types` → every value type of the interface, sent as a parameter and
//!   read back, a line each; `GET /events/debug/sleep?s=S` → `pg_sleep(S)`;
//!   `GET /events/debug/fail` → a division by zero, answered with its SQLSTATE;
//!   `GET /events/debug/bench?op=select|insert|none&n=N` → N point SELECTs of event 1 of
//!   `bench`, or N INSERTs, on one connection, for the benchmarks (benches/README.md).
use spin_sdk::http::body::IncomingBodyExt;
use spin_sdk::http::{IntoResponse, Method, Request, StatusCode};
use spin_sdk::http_service;
use spin_sdk::pg::{Connection, DbValue, Error, ParameterValue, PgError, QueryError};

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
    let method = request.method().clone();
    let body = request.into_body();
    let body = match body.bytes().await {
        Ok(bytes) => bytes.to_vec(),
        Err(e) => return (StatusCode::BAD_REQUEST, format!("body: {e}\n")),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (method, segments.as_slice()) {
        (Method::POST, ["events", "setup"]) => setup().await,
        (Method::GET, ["events", "debug", "types"]) => types().await,
        (Method::GET, ["events", "debug", "sleep"]) => {
            let seconds = param("s").and_then(|s| s.parse().ok()).unwrap_or(1.0);
            sleep(seconds).await
        }
        (Method::GET, ["events", "debug", "fail"]) => fail().await,
        (Method::GET, ["events", "debug", "bench"]) => {
            let n = param("n").and_then(|n| n.parse().ok()).unwrap_or(1);
            bench(param("op").as_deref(), n).await
        }
        (Method::POST, ["events", aggregate]) => {
            let version = param("version").and_then(|v| v.parse().ok());
            match (version, param("type")) {
                (Some(version), Some(kind)) => append(aggregate, version, &kind, body).await,
                _ => Ok((
                    StatusCode::BAD_REQUEST,
                    "version and type are required\n".into(),
                )),
            }
        }
        (Method::GET, ["events", aggregate]) => {
            let after = param("after").and_then(|v| v.parse().ok()).unwrap_or(0);
            replay(aggregate, after).await
        }
        _ => Ok((StatusCode::NOT_FOUND, format!("nothing at {path}\n"))),
    };
    result.unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {e}\n")))
}

async fn connect() -> Result<Connection, Box<dyn std::error::Error>> {
    let address = spin_sdk::variables::get("database_url").await?;
    Ok(Connection::open(address).await?)
}

/// The SQLSTATE of a database error, if PostgreSQL gave one.
fn sqlstate(e: &Error) -> Option<&str> {
    match e {
        Error::PgError(PgError::QueryFailed(QueryError::DbError(db))) => Some(&db.code),
        _ => None,
    }
}

async fn setup() -> Result<Reply, Box<dyn std::error::Error>> {
    let db = connect().await?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS events (
            id BIGSERIAL PRIMARY KEY,
            aggregate_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            event_type TEXT NOT NULL,
            data JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            UNIQUE (aggregate_id, version)
        )",
        vec![],
    )
    .await?;
    db.execute(
        "CREATE TABLE IF NOT EXISTS bench_rows (id BIGSERIAL PRIMARY KEY, n BIGINT NOT NULL)",
        vec![],
    )
    .await?;
    Ok((StatusCode::OK, "ready\n".into()))
}

async fn append(
    aggregate: &str,
    version: i32,
    kind: &str,
    data: Vec<u8>,
) -> Result<Reply, Box<dyn std::error::Error>> {
    let db = connect().await?;
    let inserted = db
        .execute(
            "INSERT INTO events (aggregate_id, version, event_type, data) VALUES ($1, $2, $3, $4)",
            vec![
                ParameterValue::Str(aggregate.into()),
                ParameterValue::Int32(version),
                ParameterValue::Str(kind.into()),
                ParameterValue::Jsonb(data),
            ],
        )
        .await;
    Ok(match inserted {
        Ok(_) => (
            StatusCode::CREATED,
            format!("appended {aggregate} v{version}\n"),
        ),
        Err(e) if sqlstate(&e) == Some("23505") => (
            StatusCode::CONFLICT,
            format!("version {version} of {aggregate} exists\n"),
        ),
        Err(Error::PgError(PgError::BadParameter(m))) => {
            (StatusCode::BAD_REQUEST, format!("{m}\n"))
        }
        Err(e) => return Err(e.into()),
    })
}

fn text(value: &DbValue) -> String {
    match value {
        DbValue::Str(s) => s.clone(),
        DbValue::Int32(i) => i.to_string(),
        DbValue::Jsonb(j) => String::from_utf8_lossy(j).into_owned(),
        other => format!("{other:?}"),
    }
}

async fn replay(aggregate: &str, after: i32) -> Result<Reply, Box<dyn std::error::Error>> {
    let db = connect().await?;
    let rows = db
        .query(
            "SELECT version, event_type, data::text FROM events WHERE aggregate_id = $1 AND version > $2 ORDER BY version",
            vec![ParameterValue::Str(aggregate.into()), ParameterValue::Int32(after)],
        )
        .await?
        .collect()
        .await?;
    let lines: String = rows
        .iter()
        .map(|row| format!("{} {} {}\n", text(&row[0]), text(&row[1]), text(&row[2])))
        .collect();
    Ok((StatusCode::OK, lines))
}

async fn types() -> Result<Reply, Box<dyn std::error::Error>> {
    use spin_sdk::pg::{Interval, RangeBoundKind::*};
    let db = connect().await?;
    let params = vec![
        ParameterValue::Boolean(true),
        ParameterValue::Int16(-2),
        ParameterValue::Int32(40_000),
        ParameterValue::Int64(1 << 40),
        ParameterValue::Floating32(1.5),
        ParameterValue::Floating64(-0.25),
        ParameterValue::Str("x'; DROP TABLE events; --".into()),
        ParameterValue::Binary(vec![0, 1, 255]),
        ParameterValue::Date((2026, 12, 7)),
        ParameterValue::Time((13, 14, 15, 500_000_000)),
        ParameterValue::Datetime((2026, 12, 7, 13, 14, 15, 0)),
        ParameterValue::Timestamp(1_796_000_000),
        ParameterValue::Uuid("67e55044-10b1-426f-9247-bb680e5fe0c8".into()),
        ParameterValue::Jsonb(br#"{"a": [1, 2]}"#.to_vec()),
        ParameterValue::Decimal("12345.6789".into()),
        ParameterValue::RangeInt32((Some((1, Inclusive)), Some((10, Exclusive)))),
        ParameterValue::RangeInt64((Some((5, Inclusive)), None)),
        ParameterValue::RangeDecimal((
            Some(("1.5".into(), Inclusive)),
            Some(("2.5".into(), Inclusive)),
        )),
        ParameterValue::ArrayInt32(vec![Some(1), None, Some(3)]),
        ParameterValue::ArrayInt64(vec![Some(-1)]),
        ParameterValue::ArrayDecimal(vec![Some("0.1".into()), None]),
        ParameterValue::ArrayStr(vec![Some("a".into()), None]),
        ParameterValue::Interval(Interval {
            micros: 1_000_000,
            days: 2,
            months: 3,
        }),
        ParameterValue::DbNull,
    ];
    let result = db
        .query(
            "SELECT $1::bool, $2::int2, $3::int4, $4::int8, $5::float4, $6::float8, $7::text, $8::bytea, $9::date, $10::time, $11::timestamp, $12::timestamptz, $13::uuid, $14::jsonb, $15::numeric, $16::int4range, $17::int8range, $18::numrange, $19::int4[], $20::int8[], $21::numeric[], $22::text[], $23::interval, $24::text, '10.0.0.1'::inet",
            params,
        )
        .await?;
    let columns: Vec<String> = result
        .columns()
        .iter()
        .map(|c| format!("{:?}", c.data_type))
        .collect();
    let rows = result.collect().await?;
    let mut out = format!("columns {}\n", columns.join(","));
    // A row is indexed by column, not iterated.
    let row = &rows[0];
    out.extend((0..columns.len()).map(|i| format!("{:?}\n", row[i])));
    Ok((StatusCode::OK, out))
}

async fn sleep(seconds: f64) -> Result<Reply, Box<dyn std::error::Error>> {
    let db = connect().await?;
    db.query(
        "SELECT pg_sleep($1)",
        vec![ParameterValue::Floating64(seconds)],
    )
    .await?
    .collect()
    .await?;
    Ok((StatusCode::OK, "slept\n".into()))
}

async fn fail() -> Result<Reply, Box<dyn std::error::Error>> {
    let db = connect().await?;
    match db.query("SELECT 1 / 0", vec![]).await {
        Ok(_) => Ok((StatusCode::OK, "no error\n".into())),
        Err(e) => Ok((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}\n", sqlstate(&e).unwrap_or("none")),
        )),
    }
}

async fn bench(op: Option<&str>, n: u32) -> Result<Reply, Box<dyn std::error::Error>> {
    let db = connect().await?;
    match op {
        Some("select") => {
            for _ in 0..n {
                db.query(
                    "SELECT version, event_type FROM events WHERE aggregate_id = $1 AND version = $2",
                    vec![ParameterValue::Str("bench".into()), ParameterValue::Int32(1)],
                )
                .await?
                .collect()
                .await?;
            }
        }
        Some("insert") => {
            for i in 0..n {
                db.execute(
                    "INSERT INTO bench_rows (n) VALUES ($1)",
                    vec![ParameterValue::Int64(i.into())],
                )
                .await?;
            }
        }
        Some("none") => {}
        other => return Ok((StatusCode::BAD_REQUEST, format!("op {other:?}\n"))),
    }
    Ok((StatusCode::OK, format!("{n}\n")))
}
