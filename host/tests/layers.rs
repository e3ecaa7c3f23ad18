//! The host's layers point one way (ARCHITECTURE.md): configuration knows nothing that
//! runs, the engine nothing of events or the HTTP front, events nothing of the server.
//! Modules of one crate cannot be kept apart by the compiler, so this reads their sources:
//! a `crate::<module>` path in a layer that must not know that module fails here.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The places in `layer` (a module directory under src/) that name one of `forbidden`,
/// comments aside.
fn reaches(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in sources(&src().join(layer)) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for module in forbidden {
                if code.contains(&format!("crate::{module}::"))
                    || code.contains(&format!("crate::{module};"))
                    || code.contains(&format!("crate::{module}}}"))
                {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn configuration_imports_nothing_that_runs() {
    let found = reaches(
        "manifest",
        &[
            "events",
            "outbound",
            "engine",
            "server",
            "functions",
            "listener",
            "cli",
            "knative",
            "keyvalue",
            "capabilities",
            "traffic",
        ],
    );
    assert!(
        found.is_empty(),
        "manifest reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_engine_knows_neither_events_nor_the_http_front() {
    let found = reaches(
        "engine",
        &[
            "events",
            "server",
            "functions",
            "listener",
            "cli",
            "knative",
        ],
    );
    assert!(found.is_empty(), "engine reaches up:\n{}", found.join("\n"));
}

#[test]
fn events_know_nothing_of_the_server() {
    let found = reaches("events", &["server", "listener", "cli"]);
    assert!(found.is_empty(), "events reach up:\n{}", found.join("\n"));
}

#[test]
fn the_check_finds_an_import() {
    // The tests above must be able to fail: the server does import events.
    assert!(!reaches(".", &["events"]).is_empty());
}
