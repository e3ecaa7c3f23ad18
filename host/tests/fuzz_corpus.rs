//! Replays the fuzzers' corpora (`fuzz/corpus/<target>/`, seeds plus every input the
//! fuzzers kept or found failing) through the same property checks the fuzz targets run,
//! so a finding stays fixed without nightly or cargo-fuzz.

use std::path::Path;

use wasmfn::fuzzing::ManifestCase;

/// What `check` found for each input of `target`'s corpus.
fn replay<T>(target: &str, check: fn(&[u8]) -> T) -> Vec<T> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        match std::panic::catch_unwind(|| check(&data)) {
            Ok(what) => found.push(what),
            Err(_) => panic!("{target}: {} breaks a property", path.display()),
        }
    }
    assert!(!found.is_empty(), "{} has no inputs", dir.display());
    found
}

#[test]
fn cloudevents_decode_corpus() {
    let events = replay("cloudevents_decode", wasmfn::fuzzing::cloudevents);
    // The round-trip property ran on some input, not only the never-panics one.
    assert!(
        events.iter().any(|&n| n > 0),
        "no input decoded: {events:?}"
    );
}

#[test]
fn manifest_parse_corpus() {
    let cases = replay("manifest_parse", wasmfn::fuzzing::manifest);
    assert!(
        cases
            .iter()
            .any(|c| matches!(c, ManifestCase::Rendered { .. }))
            && cases
                .iter()
                .any(|c| matches!(c, ManifestCase::Refused { .. })),
        "the corpus must hold manifests that render and manifests that are refused: {cases:?}"
    );
}

#[test]
fn route_match_corpus() {
    let found = replay("route_match", wasmfn::fuzzing::routes);
    assert!(
        found.iter().any(Option::is_some),
        "no input matched a route"
    );
}
