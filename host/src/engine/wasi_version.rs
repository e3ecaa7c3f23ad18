//! Which WASI a component was built for, read from the names it imports and exports, so a
//! component built for a WASI this host does not serve is refused with what it wants and
//! what the host offers, rather than with the parser's or the linker's first complaint
//! (a WASI 0.3 component fails to parse without the component-model-async feature:
//! "'stream' requires the component model async feature").

use wasmparser::{Parser, Payload};

/// What this host gives a guest, by WASI version, for the error a mismatch gets.
pub(crate) const OFFERED: &str = "WASI 0.2 components: wasi:http/incoming-handler@0.2.x (or wasmfn:function/event-handler@0.1.0), importing wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random, wasi:sockets and wasi:http @0.2.x, wasi:keyvalue and wasi:config @0.2.0-draft";

/// A component's `wasi:` names whose version is not 0.2.x, with the WASI version they
/// belong to ("0.3"). None when the component asks for no other WASI than 0.2, so a
/// refusal has another cause.
#[derive(Debug, PartialEq)]
pub(crate) struct Mismatch {
    /// The WASI version the first such name wants, `major.minor`.
    pub wasi: String,
    /// `exports wasi:http/handler@0.3.0`, `imports wasi:clocks/monotonic-clock@0.3.0`, ...
    pub names: Vec<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 4;
        write!(
            f,
            "it is a WASI {} component ({}",
            self.wasi,
            self.names[..self.names.len().min(SHOWN)].join(", ")
        )?;
        if self.names.len() > SHOWN {
            write!(f, ", and {} more", self.names.len() - SHOWN)?;
        }
        write!(
            f,
            "); this host serves {OFFERED}. Build it for WASI 0.2 (wasmfn-sdk, the `wasi` crate 0.14, or a wasi:http@0.2 world)"
        )
    }
}

/// From the top-level imports and exports in a component's bytes (no validation: this is
/// read when wasmtime has already refused the bytes).
pub(crate) fn of_bytes(wasm: &[u8]) -> Option<Mismatch> {
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
    of_names(names)
}

/// From names and whether each is imported or exported.
pub(crate) fn of_names(
    names: impl IntoIterator<Item = (&'static str, String)>,
) -> Option<Mismatch> {
    let mut wasi = None;
    let mut listed = Vec::new();
    for (direction, name) in names {
        let Some(version) = name
            .strip_prefix("wasi:")
            .and_then(|n| n.split_once('@'))
            .map(|(_, v)| v)
        else {
            continue;
        };
        let minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
        if minor == "0.2" {
            continue;
        }
        // Exports first: what a component exports says what it is.
        if direction == "exports" {
            listed.insert(0, format!("{direction} {name}"));
        } else {
            listed.push(format!("{direction} {name}"));
        }
        wasi.get_or_insert(minor);
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
    fn wasi_0_2_and_our_own_interfaces_are_no_mismatch() {
        assert_eq!(
            of_names(names(&[
                ("imports", "wasi:io/streams@0.2.6"),
                ("imports", "wasi:keyvalue/store@0.2.0-draft"),
                ("imports", "wasmfn:function/emit@0.1.0"),
                ("exports", "wasi:http/incoming-handler@0.2.0"),
                ("imports", "local:thing"),
            ])),
            None
        );
    }

    #[test]
    fn a_wasi_0_3_component_is_named_with_its_exports_first() {
        let m = of_names(names(&[
            ("imports", "wasi:clocks/monotonic-clock@0.3.0"),
            ("imports", "wasi:io/streams@0.2.6"),
            ("exports", "wasi:http/handler@0.3.0"),
        ]))
        .unwrap();
        assert_eq!(m.wasi, "0.3");
        assert_eq!(
            m.names,
            [
                "exports wasi:http/handler@0.3.0",
                "imports wasi:clocks/monotonic-clock@0.3.0"
            ]
        );
        let text = m.to_string();
        assert!(text.starts_with("it is a WASI 0.3 component (exports wasi:http/handler@0.3.0"));
        assert!(
            text.contains("this host serves WASI 0.2 components"),
            "{text}"
        );
    }

    #[test]
    fn bytes_that_are_no_component_are_no_mismatch() {
        assert_eq!(of_bytes(b"\0asm\x01\0\0\0"), None);
        assert_eq!(of_bytes(b"not wasm at all"), None);
    }
}
