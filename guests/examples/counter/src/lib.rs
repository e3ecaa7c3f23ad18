//! Counts in a key-value store: `POST /counter/{name}` adds one and answers the new count,
//! `GET /counter/{name}` reads it, `DELETE /counter/{name}` resets it. The store is the
//! function's `store` variable (`default` if unset), so one component counts in the
//! embedded store on a laptop and in Redis on Knative.
//!
//! `GET /bench/kv?op=get|set|increment&n=N` does N operations on one key, and `GET
//! /bench/sql?op=select|insert|none&n=N` N point SELECTs or INSERTs on the PostgreSQL at
//! the variable `database_url` (through wasmfn-sdk's `sql`, WASI 0.2), for the benchmarks
//! (benches/README.md).
use wasmfn_sdk::kv::Store;
use wasmfn_sdk::{Error, Request, Response, Router, variables};

fn store() -> Result<Store, Error> {
    Store::open(&variables::get("store").unwrap_or_else(|| "default".to_string()))
}

fn key(req: &Request) -> String {
    format!("counter:{}", req.param("name").unwrap_or_default())
}

#[wasmfn_sdk::http]
fn handle(req: Request) -> Response {
    Router::new()
        .post("/counter/:name", |req: Request| -> Result<String, Error> {
            Ok(format!("{}\n", store()?.increment(&key(&req), 1)?))
        })
        .get("/counter/:name", |req: Request| -> Result<String, Error> {
            let value = store()?.get(&key(&req))?;
            let count = value.map(|v| String::from_utf8_lossy(&v).into_owned());
            Ok(format!("{}\n", count.as_deref().unwrap_or("0")))
        })
        .delete(
            "/counter/:name",
            |req: Request| -> Result<Response, Error> {
                store()?.delete(&key(&req))?;
                Ok(Response::new(204))
            },
        )
        .get("/bench/kv", bench)
        .get("/bench/sql", bench_sql)
        .handle(req)
}

fn bench(req: Request) -> Result<String, Error> {
    let n: u32 = req
        .query_param("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let store = store()?;
    let value = [7u8; 64];
    match req.query_param("op").as_deref() {
        Some("get") => {
            store.set("bench:get", value)?;
            for _ in 0..n {
                store.get("bench:get")?;
            }
        }
        Some("set") => {
            for _ in 0..n {
                store.set("bench:set", value)?;
            }
        }
        Some("increment") => {
            for _ in 0..n {
                store.increment("bench:increment", 1)?;
            }
        }
        Some("none") => {}
        other => {
            return Err(Error::bad_request(format!(
                "op {other:?} is not get, set, increment or none"
            )));
        }
    }
    Ok(format!("{n}\n"))
}

fn bench_sql(req: Request) -> Result<String, Error> {
    use wasmfn_sdk::sql::Database;
    let n: u32 = req
        .query_param("n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let db = Database::postgres_or_sqlite("database_url", "default")?;
    match req.query_param("op").as_deref() {
        Some("select") => {
            for _ in 0..n {
                db.query(
                    "SELECT version, event_type FROM events WHERE aggregate_id = $1 AND version = $2",
                    &["bench".into(), 1.into()],
                )?;
            }
        }
        Some("insert") => {
            for i in 0..n {
                db.execute("INSERT INTO bench_rows (n) VALUES ($1)", &[i.into()])?;
            }
        }
        Some("none") => {}
        other => return Err(Error::bad_request(format!("op {other:?}"))),
    }
    Ok(format!("{n}\n"))
}
