//! Replays the fuzzers' corpora (`fuzz/corpus/<target>/`, seeds plus every input the
//! fuzzers kept or found failing) through the same property checks the fuzz targets run,
//! so a finding stays fixed without nightly or cargo-fuzz.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: {} breaks a property", path.display());
        }
        inputs += 1;
    }
    assert!(inputs > 0, "{} has no inputs", dir.display());
}

#[test]
fn cloudevents_decode_corpus() {
    replay("cloudevents_decode", wasmfn::fuzzing::cloudevents);
}

#[test]
fn manifest_parse_corpus() {
    replay("manifest_parse", wasmfn::fuzzing::manifest);
}

#[test]
fn route_match_corpus() {
    replay("route_match", wasmfn::fuzzing::routes);
}
