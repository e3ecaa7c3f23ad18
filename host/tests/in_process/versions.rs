//! Versions of a function (`versions = [...]`): the split by weight, the version header,
//! sticky keys, a share of events, per-version metrics, and the failing release the
//! rollout tests roll back (`test-flaky`).

use wasmfn_guest_artifacts as guests;

use super::{app, call, call_with};

/// `hello` twice, told apart by their greeting, as `blue` and `green` (tag `canary`).
fn hello_versions(blue: u32, green: u32, extra: &str) -> String {
    format!(
        "[[functions]]\nname = \"hello\"\nroutes = [\"/hello\"]\n{extra}\nversions = [\n\
         {{ name = \"blue\", component = {c:?}, weight = {blue}, variables = {{ greeting = \"Blue\" }} }},\n\
         {{ name = \"green\", component = {c:?}, weight = {green}, tag = \"canary\", variables = {{ greeting = \"Green\" }} }},\n]\n",
        c = guests::HELLO
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_split_by_weight_and_each_response_names_its_version() {
    let app = app(&hello_versions(70, 30, ""));
    let mut green = 0;
    for _ in 0..10_000 {
        let r = call(&app, "GET", "/hello?name=x", "").await;
        let version = r.headers["x-wasmfn-version"].to_str().unwrap();
        let expected = if version == "green" {
            "Green, x!\n"
        } else {
            "Blue, x!\n"
        };
        assert_eq!(
            r.text(),
            expected,
            "the body comes from the version the header names"
        );
        green += usize::from(version == "green");
    }
    assert!(
        (2_800..=3_200).contains(&green),
        "green got {green} of 10,000 at weight 30"
    );
    let metrics = app.metrics().encode();
    for version in ["blue", "green"] {
        assert!(
            metrics.contains(&format!(
                "function=\"hello\",version=\"{version}\",status=\"200\""
            )),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_version_header_reaches_a_weight_zero_canary_and_an_unknown_one_falls_back() {
    let app = app(&hello_versions(100, 0, ""));
    for label in ["canary", "green"] {
        let r = call_with(&app, "GET", "/hello", &[("x-wasmfn-version", label)], "").await;
        assert_eq!((r.status, r.text()), (200, "Green, world!\n".to_string()));
    }
    let r = call_with(&app, "GET", "/hello", &[("x-wasmfn-version", "purple")], "").await;
    assert_eq!(r.text(), "Blue, world!\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_user_stays_on_one_version() {
    let app = app(&hello_versions(
        50,
        50,
        "sticky = { header = \"x-user-id\" }",
    ));
    let mut per_version = [0; 2];
    for user in 0..200 {
        let id = format!("user-{user}");
        let first = call_with(&app, "GET", "/hello", &[("x-user-id", &id)], "")
            .await
            .text();
        for _ in 0..4 {
            let again = call_with(&app, "GET", "/hello", &[("x-user-id", &id)], "")
                .await
                .text();
            assert_eq!(again, first, "{id} moved between versions");
        }
        per_version[usize::from(first.starts_with("Green"))] += 1;
    }
    assert!(
        per_version.iter().all(|&n| n > 60),
        "users spread over both: {per_version:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_to_a_function_with_versions_are_shared_by_weight() {
    let text = format!(
        "[[functions]]\nname = \"echoes\"\nevents = [{{ type = \"com.example.ping\" }}]\nversions = [\n\
         {{ name = \"old\", component = {c:?}, weight = 50 }},\n\
         {{ name = \"new\", component = {c:?}, weight = 50 }},\n]\n",
        c = guests::EVENT_ECHO
    );
    let app = app(&text);
    for i in 0..400 {
        let id = format!("e-{i}");
        let r = call_with(
            &app,
            "POST",
            "/",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", &id),
                ("ce-source", "/test"),
                ("ce-type", "com.example.ping"),
            ],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let metrics = app.metrics().encode();
    let count = |version: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("wasmfn_events_total")
                    && l.contains(&format!("version=\"{version}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let (old, new) = (count("old"), count("new"));
    assert_eq!(old + new, 400.0, "{metrics}");
    assert!(
        (140.0..=260.0).contains(&new),
        "new got {new} of 400 at weight 50"
    );
}

/// The failing release: `fail_percent` of its answers are 500s; unset, none.
#[tokio::test(flavor = "multi_thread")]
pub(crate) async fn test_flaky() {
    let text = super::entry(
        "flaky",
        guests::TEST_FLAKY,
        &["/flaky"],
        "variables = { fail_percent = \"20\" }",
    ) + &super::entry("steady", guests::TEST_FLAKY, &["/steady"], "");
    let app = app(&text);
    let mut failed = 0;
    for _ in 0..500 {
        let r = call(&app, "GET", "/flaky", "").await;
        match r.status {
            500 => failed += 1,
            200 => assert_eq!(r.text(), "ok\n"),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(call(&app, "GET", "/steady", "").await.status, 200);
    }
    assert!(
        (50..=150).contains(&failed),
        "{failed} of 500 failed at fail_percent 20"
    );
}
