//! Which WASI a component was built for, read from the names it imports and exports:
//! whether it needs the WASI 0.3 engine (see `Engine`), and, when a component is built for
//! a WASI this host does not serve, what it wants and what the host offers, rather than the
//! parser's or the linker's first complaint.

use wasmparser::{Parser, Payload};

/// What this host gives a guest, by WASI version, for the error a mismatch gets.
pub(crate) const OFFERED: &str = "WASI 0.2 components (exporting wasi:http/incoming-handler@0.2.x or wasmfn:function/event-handler@0.1.0; importing wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random, wasi:sockets and wasi:http up to @0.2.12) and WASI 0.3 components (exporting wasi:http/handler@0.3.0 or @0.3.0-rc-2026-03-15; importing wasi:cli, wasi:clocks, wasi:filesystem, wasi:random, wasi:sockets and wasi:http @0.3.0 or @0.3.0-rc-2026-03-15), either importing wasi:keyvalue @0.2.0-draft or -draft2 and wasi:config @0.2.0-draft";

/// The WASI 0.3 release candidate that Spin's SDKs import beside 0.3.0 (their
/// `spin:up/platform@4.1.0` world includes both).
pub(crate) const RELEASE_CANDIDATE: &str = "0.3.0-rc-2026-03-15";

/// The candidate's interfaces whose WIT is the same as the 0.3.0 this host serves (wasmtime
/// 48's), so 0.3.0's implementations serve them too, as Spin 4 does. A component importing
/// a candidate interface not listed gets it linked by `unserved.rs`: it loads, and a call
/// fails with that interface's own error.
const SAME_AS_0_3_0: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/types",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/types",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/system-clock",
    "wasi:clocks/timezone",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/types",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/client",
    // Exported: a component built for the candidate alone (the `wasip3` crate 0.6) serves
    // its requests through it.
    "wasi:http/handler",
];

/// The candidate's imports (and its `wasi:http/handler` export) that this host serves,
/// renamed in place from
/// `...@0.3.0-rc-2026-03-15` to `...@0.3.0+rc-2026-03-15`: the same length, so one byte
/// changes per name, and as build metadata of 0.3.0 the name is semver-compatible with
/// 0.3.0, so wasmtime's linker resolves it to the 0.3.0 implementation and still checks
/// every type against it. None when the component imports no such name.
pub(crate) fn serve_release_candidate(wasm: &[u8]) -> Option<Vec<u8>> {
    // Every uncached load passes here: a scan for the version's bytes is cheaper than
    // parsing a component that names none.
    let needle = RELEASE_CANDIDATE.as_bytes();
    if !wasm.windows(needle.len()).any(|w| w == needle) {
        return None;
    }
    let base = wasm.as_ptr() as usize;
    let mut at = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return None };
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                let names = reader.into_iter().flatten().map(|i| i.name.name);
                at.extend(names.filter(|n| aliased(n)).map(|n| dash(base, n)));
            }
            // wasmtime finds an export by the same semver-compatible lookup.
            Payload::ComponentExportSection(reader) if depth == 1 => {
                let names = reader.into_iter().flatten().map(|e| e.name.name);
                at.extend(names.filter(|n| aliased(n)).map(|n| dash(base, n)));
            }
            _ => {}
        }
    }
    if at.is_empty() {
        return None;
    }
    let mut patched = wasm.to_vec();
    for i in at {
        debug_assert_eq!(patched[i], b'-');
        patched[i] = b'+';
    }
    Some(patched)
}

/// Where in the component the `-` after `0.3.0` of `name` is: `name` is a slice of the
/// component's bytes, which start at `base`.
fn dash(base: usize, name: &str) -> usize {
    name.as_ptr() as usize - base + name.len() - RELEASE_CANDIDATE.len() + "0.3.0".len()
}

/// Whether `name` is a release-candidate interface this host serves from 0.3.0.
fn aliased(name: &str) -> bool {
    name.split_once('@').is_some_and(|(interface, version)| {
        version == RELEASE_CANDIDATE && SAME_AS_0_3_0.contains(&interface)
    })
}

/// A component's `wasi:` names whose version this host does not serve, with the version
/// the first of them wants. None when every `wasi:` name is one of the versions served, so
/// a refusal has another cause.
#[derive(Debug, PartialEq)]
pub(crate) struct Mismatch {
    /// The version the first such name wants, e.g. `0.3.0-rc-2025-09-16` or `0.4.0`.
    pub wasi: String,
    /// `exports wasi:http/handler@0.4.0`, `imports wasi:clocks/monotonic-clock@0.4.0`, ...
    pub names: Vec<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 4;
        write!(
            f,
            "it is built for WASI {}, which this host does not serve ({}",
            self.wasi,
            self.names[..self.names.len().min(SHOWN)].join(", ")
        )?;
        if self.names.len() > SHOWN {
            write!(f, ", and {} more", self.names.len() - SHOWN)?;
        }
        write!(
            f,
            "); this host serves {OFFERED}. Build it for WASI 0.2 (wasmfn-sdk, the `wasi` crate 0.14, or a wasi:http@0.2 world) or WASI 0.3 (the `wasip3` crate 0.7 or later)"
        )
    }
}

/// Whether the component is a WASI 0.3 one: some top-level import or export is a `wasi:`
/// interface at 0.3.x, or our contract's WASI 0.3 version (`wasmfn:function@0.2.x`, whose
/// functions are async; an event handler may import no WASI 0.3 interface at all). Such a
/// component needs the engine with concurrency support.
pub(crate) fn is_wasi_p3(wasm: &[u8]) -> bool {
    names_are_p3(&names_of(wasm))
}

fn names_are_p3(names: &[(&'static str, String)]) -> bool {
    names.iter().any(|(_, name)| {
        version_of(name).is_some_and(|v| v.starts_with("0.3."))
            || name
                .strip_prefix("wasmfn:function/")
                .and_then(|n| n.split_once('@'))
                .is_some_and(|(_, v)| v.starts_with("0.2."))
    })
}

/// Whether a component imports our `emitter` (any version), so it may send events: read
/// from its import names alone. `None` when the bytes are not a component (a `.cwasm`).
pub fn imports_emitter(wasm: &[u8]) -> Option<bool> {
    if !Parser::is_component(wasm) {
        return None;
    }
    Some(names_of(wasm).iter().any(|(direction, name)| {
        *direction == "imports" && name.starts_with("wasmfn:function/emitter@")
    }))
}

/// From the top-level imports and exports in a component's bytes.
#[cfg(feature = "compiler")]
pub(crate) fn of_bytes(wasm: &[u8]) -> Option<Mismatch> {
    of_names(names_of(wasm))
}

/// A component's top-level import and export names, without validating it (this is read
/// before wasmtime compiles the bytes, or after it refused them; either way the compile
/// costs far more).
fn names_of(wasm: &[u8]) -> Vec<(&'static str, String)> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => names.extend(
                reader
                    .into_iter()
                    .flatten()
                    .map(|i| ("imports", i.name.name.to_string())),
            ),
            Payload::ComponentExportSection(reader) if depth == 1 => names.extend(
                reader
                    .into_iter()
                    .flatten()
                    .map(|e| ("exports", e.name.name.to_string())),
            ),
            _ => {}
        }
    }
    names
}

/// The version of a `wasi:` interface name, `wasi:http/types@0.3.0` → `0.3.0`.
fn version_of(name: &str) -> Option<&str> {
    name.strip_prefix("wasi:")
        .and_then(|n| n.split_once('@'))
        .map(|(_, v)| v)
}

/// Whether this host links `wasi:` interfaces at `version`: any 0.2.x, and 0.3.x releases
/// (not release candidates, whose interfaces changed before 0.3.0 was ratified).
fn served(version: &str) -> bool {
    // Build metadata says nothing of the interface: `0.3.0+rc-...` is a renamed candidate.
    let version = version.split_once('+').map_or(version, |(v, _)| v);
    let mut parts = version.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("0"), Some("2"), Some(_)) => true,
        (Some("0"), Some("3"), Some(patch)) => patch.bytes().all(|b| b.is_ascii_digit()),
        _ => false,
    }
}

/// From names and whether each is imported or exported.
pub(crate) fn of_names(
    names: impl IntoIterator<Item = (&'static str, String)>,
) -> Option<Mismatch> {
    let mut wasi = None;
    let mut listed = Vec::new();
    for (direction, name) in names {
        let Some(version) = version_of(&name) else {
            continue;
        };
        if served(version) || aliased(&name) {
            continue;
        }
        wasi.get_or_insert(version.to_string());
        // Exports first: what a component exports says what it is.
        if direction == "exports" {
            listed.insert(0, format!("{direction} {name}"));
        } else {
            listed.push(format!("{direction} {name}"));
        }
    }
    Some(Mismatch {
        wasi: wasi?,
        names: listed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        list.iter().map(|(d, n)| (*d, n.to_string())).collect()
    }

    #[test]
    fn wasi_0_2_and_0_3_and_our_own_interfaces_are_no_mismatch() {
        assert_eq!(
            of_names(names(&[
                ("imports", "wasi:io/streams@0.2.6"),
                ("imports", "wasi:keyvalue/store@0.2.0-draft"),
                ("imports", "wasi:clocks/monotonic-clock@0.3.0"),
                ("imports", "wasmfn:function/emit@0.1.0"),
                ("exports", "wasi:http/incoming-handler@0.2.0"),
                ("exports", "wasi:http/handler@0.3.0"),
                ("imports", "local:thing"),
            ])),
            None
        );
    }

    #[test]
    fn a_release_candidate_or_a_later_wasi_is_named_with_its_exports_first() {
        let m = of_names(names(&[
            ("imports", "wasi:clocks/monotonic-clock@0.3.0-rc-2025-09-16"),
            ("imports", "wasi:io/streams@0.2.6"),
            ("exports", "wasi:http/handler@0.3.0-rc-2025-09-16"),
        ]))
        .unwrap();
        assert_eq!(m.wasi, "0.3.0-rc-2025-09-16");
        assert_eq!(
            m.names,
            [
                "exports wasi:http/handler@0.3.0-rc-2025-09-16",
                "imports wasi:clocks/monotonic-clock@0.3.0-rc-2025-09-16"
            ]
        );
        let text = m.to_string();
        assert!(
            text.starts_with("it is built for WASI 0.3.0-rc-2025-09-16, which this host does not serve (exports wasi:http/handler@0.3.0-rc-2025-09-16"),
            "{text}"
        );
        assert!(text.contains("and WASI 0.3 components"), "{text}");
        let later = of_names(names(&[("exports", "wasi:http/handler@0.4.0")])).unwrap();
        assert_eq!(later.wasi, "0.4.0");
    }

    #[test]
    fn a_wasi_0_3_component_is_told_apart_by_its_names() {
        assert!(names_are_p3(&names(&[
            ("imports", "wasi:cli/environment@0.2.6"),
            ("exports", "wasi:http/handler@0.3.0"),
        ])));
        assert!(!names_are_p3(&names(&[(
            "exports",
            "wasi:http/incoming-handler@0.2.12"
        )])));
        assert!(!is_wasi_p3(b"not wasm at all"));
        assert!(served("0.3.1") && served("0.2.12") && !served("0.3.0-rc-2025-08-15"));
    }

    #[test]
    fn bytes_that_are_no_component_are_no_mismatch() {
        assert_eq!(of_bytes(b"\0asm\x01\0\0\0"), None);
        assert_eq!(of_bytes(b"not wasm at all"), None);
    }
}
