//! The properties the fuzz targets in `fuzz/` check, here so that the corpus replay test
//! (`host/tests/fuzz_corpus.rs`) runs the very same checks on every `cargo test`. Each
//! function takes arbitrary bytes, panics only when a property is broken, and returns
//! what it checked, so a test can tell a checked input from one passed over.

use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::cloudevent;
use crate::manifest::Manifest;
use crate::manifest::routes::{RoutePattern, RouteTable, Segment};

/// An HTTP request as the fuzzer writes it: `name: value` header lines, a blank line, the
/// body. Lines that are not valid headers are skipped, as hyper would have refused them.
fn request(data: &[u8]) -> (HeaderMap, &[u8]) {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let (head, body) = (&data[..split], data.get(split + 2..).unwrap_or_default());
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    (headers, body)
}

/// CloudEvents decoding in all three modes: never panics, and whatever decodes encodes to
/// something that decodes again to the same events (we never send what we would refuse).
/// Returns how many events made the round trip.
pub fn cloudevents(data: &[u8]) -> usize {
    let (headers, body) = request(data);
    let Some(mode) = cloudevent::mode_of(&headers) else {
        return 0;
    };
    let Ok(events) = cloudevent::decode(mode, &headers, body) else {
        return 0;
    };
    if events.is_empty() && mode != cloudevent::Mode::Batch {
        panic!("{mode:?} decoded to no event");
    }
    if events.is_empty() {
        return 0;
    }
    let (out_headers, out_body) = cloudevent::encode(mode, &events);
    let again = cloudevent::decode(mode, &out_headers, &out_body)
        .unwrap_or_else(|e| panic!("our own {mode:?} encoding of {events:?} does not decode: {e}"));
    assert_eq!(again, events, "{mode:?} round trip changed the events");
    events.len()
}

/// What [`manifest`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ManifestCase {
    /// Not UTF-8: not a manifest at all.
    NotText,
    /// Refused, naming this line of the file.
    Refused {
        /// The line the error names.
        line: usize,
    },
    /// Parsed, and rendered to this many Knative objects.
    Rendered {
        /// How many.
        objects: usize,
    },
    /// Parsed, and refused by the renderer (something Knative cannot run), naming this line.
    NotDeployable {
        /// The line the error names.
        line: usize,
    },
}

/// The line an error message names, asserting that it names the fuzz manifest and a line
/// inside it.
fn named_line(message: &str, text: &str) -> usize {
    let rest = message
        .strip_prefix("/fuzz/wasmfn.toml:")
        .unwrap_or_else(|| panic!("error does not name the file: {message}"));
    let line: usize = rest
        .split(':')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("error does not name a line: {message}"));
    let lines = text.lines().count().max(1) + 1;
    assert!(
        (1..=lines).contains(&line),
        "line {line} is outside the {lines}-line file: {message}"
    );
    line
}

/// Manifest parsing: never panics; an error names the file and a line of it; a manifest
/// that parses also renders to Knative objects, or is refused with the file and a line.
pub fn manifest(data: &[u8]) -> ManifestCase {
    let Ok(text) = std::str::from_utf8(data) else {
        return ManifestCase::NotText;
    };
    let path = Path::new("/fuzz/wasmfn.toml");
    match Manifest::parse(path, text) {
        Ok(manifest) => match crate::knative::objects(&manifest, "registry.example/wasmfn:fuzz") {
            Ok(objects) => {
                assert!(!objects.is_empty(), "a manifest rendered to nothing");
                ManifestCase::Rendered {
                    objects: objects.len(),
                }
            }
            Err(e) => ManifestCase::NotDeployable {
                line: named_line(&e.to_string(), text),
            },
        },
        Err(e) => ManifestCase::Refused {
            line: named_line(&e.to_string(), text),
        },
    }
}

/// Route matching: the table agrees with the rule it documents (an exact route first,
/// then a route with parameters, then the longest prefix), checked against a plain scan. Input: one route per line, the
/// last line is the path looked up. Returns the function found, if any.
pub fn routes(data: &[u8]) -> Option<usize> {
    let Ok(text) = std::str::from_utf8(data) else {
        return None;
    };
    let mut lines: Vec<&str> = text.split('\n').collect();
    let path = lines.pop().unwrap_or_default();
    // Route i belongs to function i % 3, so duplicates within a function are also tried.
    let patterns: Vec<(RoutePattern, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| RoutePattern::parse(l).ok().map(|p| (p, i % 3)))
        .collect();
    let Ok(table) = RouteTable::build(patterns.clone()) else {
        return None;
    };
    let exact = patterns.iter().find_map(|(p, f)| match p {
        RoutePattern::Exact(e) if e == path => Some(*f),
        _ => None,
    });
    // Then the route with parameters that fits with the most fixed segments, the first
    // declared among equals.
    let parts: Option<Vec<&str>> = path.strip_prefix('/').map(|p| p.split('/').collect());
    let with_params = parts.and_then(|parts| {
        // Ranked by fixed segments, then by having no wildcard.
        let mut best: Option<((usize, bool), usize)> = None;
        for (p, f) in &patterns {
            let RoutePattern::Params(segments) = p else {
                continue;
            };
            let (before, wildcard) = match segments.split_last() {
                Some((Segment::Rest, before)) => (before, true),
                _ => (segments.as_slice(), false),
            };
            let fits = (parts.len() == before.len() || wildcard && parts.len() > before.len())
                && before.iter().zip(&parts).all(|(s, part)| match s {
                    Segment::Fixed(t) => t == part,
                    Segment::Param(_) => !part.is_empty(),
                    Segment::Rest => false,
                });
            let fixed = before
                .iter()
                .filter(|s| matches!(s, Segment::Fixed(_)))
                .count();
            let rank = (fixed, !wildcard);
            if fits && best.is_none_or(|(most, _)| rank > most) {
                best = Some((rank, *f));
            }
        }
        best.map(|(_, f)| f)
    });
    let expected = exact.or(with_params).or_else(|| {
        patterns
            .iter()
            .filter_map(|(p, f)| match p {
                RoutePattern::Prefix(prefix)
                    if path == prefix
                        || path
                            .strip_prefix(prefix.as_str())
                            .is_some_and(|rest| rest.starts_with('/')) =>
                {
                    Some((prefix.len(), *f))
                }
                _ => None,
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, f)| f)
    });
    assert_eq!(
        table.lookup(path),
        expected,
        "routes {patterns:?}, path {path:?}"
    );
    expected
}

#[cfg(test)]
mod tests {
    use super::ManifestCase;

    #[test]
    fn the_properties_check_plain_inputs() {
        let event = b"ce-specversion: 1.0\nce-id: 1\nce-source: /s\nce-type: t\ncontent-type: application/json\n\n{\"a\":1}";
        assert_eq!(super::cloudevents(event), 1);
        assert_eq!(super::cloudevents(b"content-type: text/plain\n\nhi"), 0);
        // A Service, its ServiceAccount, NetworkPolicy and SinkBinding.
        assert_eq!(
            super::manifest(
                b"[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nroutes = [\"/a/*\"]\n",
            ),
            ManifestCase::Rendered { objects: 4 }
        );
        assert_eq!(
            super::manifest(b"[[functions]]\nname = \"A\"\n"),
            ManifestCase::Refused { line: 2 }
        );
        // Parses, but a seconds field is for `wasmfn serve` alone: no PingSource takes it.
        let seconds = b"[[functions]]\nname = \"a\"\ncomponent = \"a.wasm\"\nschedules = [{ name = \"s\", cron = \"*/5 * * * * *\" }]\n";
        assert!(
            matches!(super::manifest(seconds), ManifestCase::NotDeployable { .. }),
            "{:?}",
            super::manifest(seconds)
        );
        assert_eq!(super::manifest(&[0xff, 0xfe]), ManifestCase::NotText);
        // The longest prefix beats the shorter one and the exact route elsewhere.
        assert_eq!(super::routes(b"/a/*\n/a/b\n/*\n/a/b/c"), Some(0));
        assert_eq!(super::routes(b"/a/*\n/a/b\n/*\n/a/b"), Some(1));
        assert_eq!(super::routes(b"/a/*\n/z"), None);
    }
}
