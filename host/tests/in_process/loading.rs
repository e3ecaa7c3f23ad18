//! Loading: functions past `[server] loaded_functions` load on first request and are
//! unloaded LRU; load errors name the file; the compile cache and its file-identity index.

use std::path::Path;
use std::time::Duration;

use wasmfn::engine::{Grants, InvokeError, LoadError};
use wasmfn::manifest::Manifest;
use wasmfn::server::App;
use wasmfn::testing;
use wasmfn_guest_artifacts as guests;

use super::{app, call, engine, entry, refused};

/// With more functions than `[server] loaded_functions`, the rest load on their first
/// request and the least recently used are unloaded; every one keeps answering.
#[tokio::test(flavor = "multi_thread")]
async fn functions_past_the_loaded_limit_load_on_first_request_and_are_unloaded_lru() {
    let mut text = "[server]\nloaded_functions = 2\n\n".to_string();
    for i in 0..5 {
        text += &entry(
            &format!("f{i}"),
            guests::HELLO,
            &[&format!("/f{i}")],
            "variables = { greeting = \"Hi\" }",
        );
    }
    let many = app(&text);
    assert_eq!(many.functions().len(), 5);
    assert_eq!(
        many.functions().loaded(),
        2,
        "the first two are loaded at start"
    );
    for round in 0..2 {
        for i in (0..5).rev() {
            let r = call(&many, "GET", &format!("/f{i}?name={round}"), "").await;
            assert_eq!((r.status, r.text()), (200, format!("Hi, {round}!\n")));
            assert!(
                many.functions().loaded() <= 2,
                "never more than the limit loaded"
            );
        }
        // Called f4 down to f0: the two used last stay, the least recently used went.
        let loaded: Vec<bool> = (0..5).map(|i| many.functions().is_loaded(i, 0)).collect();
        assert_eq!(loaded, [true, true, false, false, false], "round {round}");
    }
    // Ten first requests at once to a function that is not loaded: all answered.
    let calls = (0..10).map(|_| call(&many, "GET", "/f4", ""));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status, 200);
    }

    // A component that turns out broken when first needed is a 500 naming the request.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"not wasm").unwrap();
    let text = "[server]\nloaded_functions = 1\n\n".to_string()
        + &entry("ok", guests::HELLO, &["/ok"], "")
        + &entry("broken", broken.to_str().unwrap(), &["/broken"], "");
    let partly_broken = app(&text);
    let r = call(&partly_broken, "GET", "/broken", "").await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["function"], "broken");
    assert_eq!(call(&partly_broken, "GET", "/ok", "").await.status, 200);
    // A component path that does not exist fails the start even past the limit.
    let text = "[server]\nloaded_functions = 1\n\n".to_string()
        + &entry("ok", guests::HELLO, &["/ok"], "")
        + &entry("missing", "/nonexistent/missing.wasm", &["/m"], "");
    let err = refused(&text, None);
    assert!(
        err.contains("missing") && err.contains("/nonexistent/missing.wasm"),
        "{err}"
    );
}

#[test]
fn core_module_missing_file_and_garbage_are_load_errors() {
    let engine = engine(None);
    let dir = tempfile::tempdir().unwrap();
    let load = |file: &str, bytes: Option<&[u8]>| {
        let path = dir.path().join(file);
        if let Some(b) = bytes {
            std::fs::write(&path, b).unwrap();
        }
        let m =
            Manifest::parse(&dir.path().join("wasmfn.toml"), &entry("f", file, &[], "")).unwrap();
        engine
            .load(&m.functions[0], Grants::default())
            .err()
            .expect("must fail")
    };
    // The smallest core module: valid WebAssembly, but not a component.
    let err = load("core.wasm", Some(b"\0asm\x01\0\0\0"));
    assert!(matches!(err, LoadError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
    assert!(matches!(load("missing.wasm", None), LoadError::Read { .. }));
    let err = load("garbage.cwasm", Some(b"not elf at all"));
    assert!(
        matches!(err, LoadError::NotPrecompiledComponent { .. }),
        "{err:?}"
    );
}

#[test]
fn cwasm_from_another_wasmtime_is_recompiled_from_its_wasm_or_rejected_clearly() {
    let engine = engine(None);
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = engine.precompile(Path::new(guests::HELLO)).unwrap();
    // Pretend another wasmtime release made it: the engine section records the major
    // version as [format 0, length 2, "48"].
    let marker = [0u8, 2, b'4', b'8'];
    let at = bytes
        .windows(4)
        .position(|w| w == marker)
        .expect("version marker in .cwasm");
    bytes[at + 2..at + 4].copy_from_slice(b"47");
    let cwasm = dir.path().join("hello.cwasm");
    std::fs::write(&cwasm, &bytes).unwrap();
    let manifest = Manifest::parse(
        &dir.path().join("wasmfn.toml"),
        &entry("hello", "hello.cwasm", &[], ""),
    )
    .unwrap();

    let err = engine
        .load(&manifest.functions[0], Grants::default())
        .err()
        .expect("an incompatible .cwasm must be refused");
    assert!(matches!(err, LoadError::Incompatible { .. }), "{err}");
    assert!(
        err.to_string().contains("hello.wasm") && err.to_string().contains("wasmfn compile"),
        "{err}"
    );

    std::fs::copy(guests::HELLO, dir.path().join("hello.wasm")).unwrap();
    engine
        .load(&manifest.functions[0], Grants::default())
        .expect("recompiled from the .wasm beside it");
}

#[tokio::test(flavor = "multi_thread")]
async fn compile_cache_is_written_reused_and_repaired() {
    let cache = tempfile::tempdir().unwrap();
    let manifest = Manifest::parse(
        Path::new("/virtual/wasmfn.toml"),
        &entry("hello", guests::HELLO, &["/hello"], ""),
    )
    .unwrap();
    let engine = engine(Some(cache.path()));
    engine
        .load(&manifest.functions[0], Grants::default())
        .unwrap();
    let files = |ext: &str| -> Vec<_> {
        std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    };
    let entries = files("cwasm");
    assert_eq!(entries.len(), 1, "one entry per component: {entries:?}");
    // And one index naming it, so the next start finds it without hashing the .wasm.
    let index = files("index");
    assert_eq!(index.len(), 1, "{index:?}");
    assert_eq!(
        std::fs::read_to_string(&index[0]).unwrap(),
        entries[0].file_name().unwrap().to_str().unwrap()
    );
    let modified = std::fs::metadata(&entries[0]).unwrap().modified().unwrap();

    engine
        .load(&manifest.functions[0], Grants::default())
        .unwrap();
    assert_eq!(
        std::fs::metadata(&entries[0]).unwrap().modified().unwrap(),
        modified,
        "second load reuses the entry"
    );

    // A damaged entry is replaced, not fatal.
    std::fs::write(&entries[0], b"truncated").unwrap();
    let app = App::load(&manifest, &engine).unwrap();
    let r = call(&app, "GET", "/hello", "").await;
    assert_eq!(r.status, 200);
    assert!(
        std::fs::metadata(&entries[0]).unwrap().len() > 1000,
        "entry rewritten"
    );

    // A component replaced at the same path is compiled afresh, never served from the
    // index of its old contents.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.wasm");
    std::fs::copy(guests::HELLO, &path).unwrap();
    let text = entry("f", path.to_str().unwrap(), &["/f/*"], "");
    let app = testing::app(&text, &engine);
    assert_eq!(
        call(&app, "GET", "/f/x?name=A", "").await.text(),
        "Hello, A!\n"
    );
    std::fs::copy(guests::ECHO, &path).unwrap();
    let app = testing::app(&text, &engine);
    let r = call(&app, "GET", "/f/x", "").await;
    assert_eq!(
        r.headers["x-echo-path"], "/f/x",
        "the new component answers"
    );
    assert_eq!(files("cwasm").len(), 2);
}

#[test]
fn invoke_errors_are_typed() {
    // The server maps these to statuses; make sure the variants say what they are.
    let e = InvokeError::Deadline(Duration::from_millis(5));
    assert_eq!(e.to_string(), "function ran past its 5ms deadline");
}

/// A reload builds the next app beside the running one: the old app still answers with its
/// manifest, the new one with the new manifest, and a reload asking for more memory than
/// the instance pool was sized for is refused, naming the function. (A request in flight
/// across a reload is the spawned binary's test, dev_loop.rs.)
#[tokio::test(flavor = "multi_thread")]
async fn a_reloaded_app_answers_with_the_new_manifest_and_refuses_a_bigger_memory() {
    let text = |greeting: &str, memory: &str| {
        entry(
            "hello",
            guests::HELLO,
            &["/hello"],
            &format!("variables = {{ greeting = {greeting:?} }}\nmemory = {memory:?}"),
        )
    };
    // The pool, not its fallback: only a pool has slots a bigger memory would outgrow.
    let Ok(engine) = wasmfn::engine::Engine::new(&wasmfn::engine::EngineOptions {
        pooling: wasmfn::engine::PoolingMode::On,
        pool_instances: 32,
        ..wasmfn::engine::EngineOptions::default()
    }) else {
        super::common::skip(
            "a_reloaded_app_answers_with_the_new_manifest_and_refuses_a_bigger_memory",
            "the pooling allocator cannot reserve its address space here",
        );
        return;
    };
    let old = testing::app(&text("Hi", "16MiB"), &engine);
    let parse = |t: &str| Manifest::parse(Path::new(testing::VIRTUAL_MANIFEST), t).unwrap();
    let new = old.reloaded(&parse(&text("Howdy", "16MiB"))).unwrap();
    assert_eq!(
        call(&old, "GET", "/hello?name=a", "").await.text(),
        "Hi, a!\n"
    );
    assert_eq!(
        call(&new, "GET", "/hello?name=a", "").await.text(),
        "Howdy, a!\n"
    );

    let e = old
        .reloaded(&parse(&text("Hi", "1GiB")))
        .err()
        .expect("a memory over the pool's slots is refused")
        .to_string();
    assert!(e.contains("`hello`") && e.contains("restart"), "{e}");
}
