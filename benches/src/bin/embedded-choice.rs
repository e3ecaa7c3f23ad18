//! How the embedded key-value store was chosen: SQLite (rusqlite, bundled) against redb, on
//! the operations guests use most, each at two durability settings. Not built by default:
//! `cargo run --release -p wasmfn-benches --features embedded-choice --bin embedded-choice`.
//! The figures and the choice are in benches/README.md.

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::time::Instant;
const T: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
fn main() {
    // 20,000 operations per figure; the durable settings 2,000, since each one syncs.
    let n = 20_000u32;
    let dir = tempfile::tempdir().unwrap();
    let val = vec![7u8; 256];
    // SQLite, WAL, synchronous=NORMAL
    let c = rusqlite::Connection::open(dir.path().join("a.sqlite")).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;").unwrap();
    let t = Instant::now();
    for i in 0..n {
        c.prepare_cached(
            "INSERT INTO kv(k,v) VALUES(?1,?2) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
        )
        .unwrap()
        .execute(rusqlite::params![format!("k{i}"), &val])
        .unwrap();
    }
    let set = t.elapsed() / n;
    let t = Instant::now();
    for i in 0..n {
        let _v: Option<Vec<u8>> = c
            .prepare_cached("SELECT v FROM kv WHERE k=?1")
            .unwrap()
            .query_row([format!("k{i}")], |r| r.get(0))
            .ok();
    }
    let get = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        let tx = c.unchecked_transaction().unwrap();
        let cur: Option<Vec<u8>> = tx
            .prepare_cached("SELECT v FROM kv WHERE k=?1")
            .unwrap()
            .query_row(["ctr"], |r| r.get(0))
            .ok();
        let v: u64 = cur
            .map(|b| String::from_utf8(b).unwrap().parse().unwrap())
            .unwrap_or(0)
            + 1;
        tx.prepare_cached(
            "INSERT INTO kv(k,v) VALUES(?1,?2) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
        )
        .unwrap()
        .execute(rusqlite::params!["ctr", v.to_string().as_bytes()])
        .unwrap();
        tx.commit().unwrap();
    }
    let inc = t.elapsed() / n;
    println!("sqlite WAL sync=NORMAL: set {set:?} get {get:?} increment {inc:?}");
    // SQLite FULL
    c.execute_batch("PRAGMA synchronous=FULL;").unwrap();
    let t = Instant::now();
    for i in 0..2000 {
        c.prepare_cached(
            "INSERT INTO kv(k,v) VALUES(?1,?2) ON CONFLICT(k) DO UPDATE SET v=excluded.v",
        )
        .unwrap()
        .execute(rusqlite::params![format!("k{i}"), &val])
        .unwrap();
    }
    println!("sqlite WAL sync=FULL: set {:?}", t.elapsed() / 2000);

    for (name, dur) in [
        ("redb Eventual", Durability::None),
        ("redb Immediate", Durability::Immediate),
    ] {
        let db = Database::create(dir.path().join(format!("{name}.redb"))).unwrap();
        let m = if name.contains("Imm") { 2000 } else { n };
        let t = Instant::now();
        for i in 0..m {
            let mut tx = db.begin_write().unwrap();
            tx.set_durability(dur).unwrap();
            {
                let mut tb = tx.open_table(T).unwrap();
                tb.insert(format!("k{i}").as_str(), val.as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        let set = t.elapsed() / m;
        let t = Instant::now();
        for i in 0..m {
            let tx = db.begin_read().unwrap();
            let tb = tx.open_table(T).unwrap();
            let _ = tb
                .get(format!("k{i}").as_str())
                .unwrap()
                .map(|v| v.value().to_vec());
        }
        let get = t.elapsed() / m;
        let t = Instant::now();
        for _ in 0..m {
            let mut tx = db.begin_write().unwrap();
            tx.set_durability(dur).unwrap();
            {
                let mut tb = tx.open_table(T).unwrap();
                let cur: u64 = tb
                    .get("ctr")
                    .unwrap()
                    .map(|v| std::str::from_utf8(v.value()).unwrap().parse().unwrap())
                    .unwrap_or(0);
                tb.insert("ctr", (cur + 1).to_string().as_bytes()).unwrap();
            }
            tx.commit().unwrap();
        }
        let inc = t.elapsed() / m;
        println!("{name}: set {set:?} get {get:?} increment {inc:?}");
    }
}
