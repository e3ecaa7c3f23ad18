//! The CloudEvents HTTP protocol binding 1.0.2: binary, structured and batched modes, with
//! the JSON event format.
//!
//! `cloudevents-sdk` holds the event and reads and writes the JSON format; this layer adds
//! what it leaves out: choosing the mode case-insensitively, percent-encoding of `ce-`
//! header values, batches, and the attribute rules of the spec (required attributes,
//! extension names, URI forms).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::{Data, ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, AttributesWriter, Event, EventBuilder, EventBuilderV10};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

/// How events travel in an HTTP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Attributes in `ce-` headers, the data as the body.
    Binary,
    /// One event as a JSON document (`application/cloudevents+json`).
    Structured,
    /// A JSON array of events (`application/cloudevents-batch+json`).
    Batch,
}

/// Why a message is not a valid CloudEvent; the text is sent back with the 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message breaks the spec; the reason says how.
    #[error("{0}")]
    Malformed(String),
    /// A structured or batched message in an event format other than JSON.
    #[error(
        "unsupported event format {0:?}: wasmfn reads application/cloudevents+json and application/cloudevents-batch+json"
    )]
    UnsupportedFormat(String),
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(reason.into())
}

const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// The context attributes of CloudEvents 1.0; any other attribute is an extension.
const CONTEXT_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

/// The mode a request uses, or `None` when it carries no CloudEvent.
pub fn mode_of(headers: &HeaderMap) -> Option<Mode> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if content_type.starts_with("application/cloudevents-batch") {
        Some(Mode::Batch)
    } else if content_type.starts_with("application/cloudevents") {
        Some(Mode::Structured)
    } else if headers.contains_key("ce-specversion") {
        Some(Mode::Binary)
    } else {
        None
    }
}

/// Reads the events of a message in `mode`: one for binary and structured, any number
/// (including none) for a batch.
pub fn decode(mode: Mode, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Event>, DecodeError> {
    match mode {
        Mode::Binary => decode_binary(headers, body).map(|e| vec![e]),
        Mode::Structured => {
            check_json_format(headers, "application/cloudevents")?;
            let value = parse_json(body)?;
            decode_json_event(value).map(|e| vec![e])
        }
        Mode::Batch => {
            check_json_format(headers, "application/cloudevents-batch")?;
            let Value::Array(items) = parse_json(body)? else {
                return Err(malformed("a batch must be a JSON array of events"));
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    decode_json_event(item).map_err(|e| match e {
                        DecodeError::Malformed(reason) => malformed(format!("event {i}: {reason}")),
                        other => other,
                    })
                })
                .collect()
        }
    }
}

/// Writes `events` as one HTTP message in `mode`: headers to add and the body. Binary and
/// structured take exactly the first event.
pub fn encode(mode: Mode, events: &[Event]) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    match (mode, events.first()) {
        (Mode::Batch, _) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(BATCH));
            let body = serde_json::to_vec(events).expect("events serialize to JSON");
            (headers, Bytes::from(body))
        }
        (Mode::Structured, Some(event)) => {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(STRUCTURED));
            let body = serde_json::to_vec(event).expect("an event serializes to JSON");
            (headers, Bytes::from(body))
        }
        (Mode::Binary, Some(event)) => {
            let mut put = |name: &str, value: &str| {
                let name = HeaderName::from_bytes(format!("ce-{name}").as_bytes())
                    .expect("validated attribute names are header names");
                let value = HeaderValue::from_str(&percent_encode(value))
                    .expect("percent-encoded values are visible ASCII");
                headers.insert(name, value);
            };
            put("specversion", "1.0");
            put("id", event.id());
            put("source", event.source());
            put("type", event.ty());
            if let Some(subject) = event.subject() {
                put("subject", subject);
            }
            if let Some(time) = event.time() {
                put("time", &format_time(time));
            }
            if let Some(schema) = event.dataschema() {
                put("dataschema", schema.as_str());
            }
            for (name, value) in event.iter_extensions() {
                put(name, &extension_string(value));
            }
            if let Some(content_type) = event.datacontenttype()
                && let Ok(v) = HeaderValue::from_str(content_type)
            {
                headers.insert(CONTENT_TYPE, v);
            }
            (headers, data_bytes(event.data()))
        }
        (_, None) => (headers, Bytes::new()),
    }
}

/// Checks the rules of the spec that `cloudevents-sdk` does not; used on everything that
/// arrives and on every event a guest replies with or emits.
pub fn validate(event: &Event) -> Result<(), String> {
    if event.specversion() != SpecVersion::V10 {
        return Err(format!(
            "unsupported specversion {}: wasmfn accepts 1.0",
            event.specversion()
        ));
    }
    if event.id().is_empty() {
        return Err("attribute id must not be empty".into());
    }
    if event.ty().is_empty() {
        return Err("attribute type must not be empty".into());
    }
    check_uri_reference("source", event.source())?;
    if event.subject().is_some_and(str::is_empty) {
        return Err("attribute subject, when present, must not be empty".into());
    }
    for (name, _) in event.iter_extensions() {
        check_extension_name(name)?;
    }
    // The spec's String: no control characters (U+0000-U+001F, U+007F-U+009F). They would
    // reach a guest, a log line or a header as they are.
    let strings = [
        ("id", Some(event.id())),
        ("source", Some(event.source().as_str())),
        ("type", Some(event.ty())),
        ("subject", event.subject()),
    ];
    let extensions = event
        .iter_extensions()
        .filter_map(|(name, value)| match value {
            ExtensionValue::String(s) => Some((name, Some(s.as_str()))),
            _ => None,
        });
    for (name, value) in strings.into_iter().chain(extensions) {
        // Nearly every value is printable ASCII: only a byte that may start a control
        // character (below 0x20, 0x7F, or 0xC2 before U+0080-U+009F) asks for a closer look.
        let suspect = |v: &str| v.bytes().any(|b| b < 0x20 || b == 0x7F || b == 0xC2);
        let control = value
            .filter(|v| suspect(v))
            .and_then(|v| v.chars().find(|c| c.is_control()));
        if let Some(c) = control {
            return Err(format!(
                "attribute {name} contains a control character (U+{:04X}), which a CloudEvents string may not",
                u32::from(c)
            ));
        }
    }
    Ok(())
}

/// The string form of an attribute, as filters and binary headers see it.
pub fn attribute(event: &Event, name: &str) -> Option<String> {
    match name {
        "specversion" => Some(event.specversion().to_string()),
        "id" => Some(event.id().to_string()),
        "source" => Some(event.source().to_string()),
        "type" => Some(event.ty().to_string()),
        "subject" => event.subject().map(str::to_string),
        "time" => event.time().map(format_time),
        "datacontenttype" => event.datacontenttype().map(str::to_string),
        "dataschema" => event.dataschema().map(|u| u.to_string()),
        ext => event.extension(ext).map(extension_string),
    }
}

/// An extension value in its canonical string form.
pub fn extension_string(value: &ExtensionValue) -> String {
    match value {
        ExtensionValue::String(s) => s.clone(),
        ExtensionValue::Boolean(b) => b.to_string(),
        ExtensionValue::Integer(i) => i.to_string(),
    }
}

/// The data of an event as the bytes a binary-mode body or a guest sees.
pub fn data_bytes(data: Option<&Data>) -> Bytes {
    match data {
        None => Bytes::new(),
        Some(Data::Binary(b)) => Bytes::copy_from_slice(b),
        Some(Data::String(s)) => Bytes::copy_from_slice(s.as_bytes()),
        Some(Data::Json(v)) => Bytes::from(serde_json::to_vec(v).expect("JSON serializes")),
    }
}

/// Turns bytes and their media type into event data: JSON stays JSON (written inline in
/// the JSON format), text stays text, anything else is binary (`data_base64`).
pub fn data_from_bytes(content_type: Option<&str>, bytes: Vec<u8>) -> Data {
    let json_type = content_type.is_none_or(is_json_media_type);
    if json_type && let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        return Data::Json(value);
    }
    let text_type =
        content_type.is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("text/"));
    match String::from_utf8(bytes) {
        Ok(text) if text_type => Data::String(text),
        Ok(text) => Data::Binary(text.into_bytes()),
        Err(e) => Data::Binary(e.into_bytes()),
    }
}

fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// RFC 3339 with `Z`, the form the spec's examples use.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn check_json_format(headers: &HeaderMap, prefix: &str) -> Result<(), DecodeError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    // The bare type (no `+format`) is read as JSON, the only format the spec requires.
    if essence == prefix || essence == format!("{prefix}+json") {
        Ok(())
    } else {
        Err(DecodeError::UnsupportedFormat(content_type.to_string()))
    }
}

fn parse_json(body: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(body).map_err(|e| malformed(format!("body is not valid JSON: {e}")))
}

fn decode_json_event(value: Value) -> Result<Event, DecodeError> {
    let Value::Object(map) = value else {
        return Err(malformed("an event must be a JSON object"));
    };
    check_json_attributes(&map).map_err(malformed)?;
    let event: Event = serde_json::from_value(Value::Object(map))
        .map_err(|e| malformed(format!("invalid event: {e}")))?;
    validate(&event).map_err(malformed)?;
    Ok(event)
}

fn check_json_attributes(map: &Map<String, Value>) -> Result<(), String> {
    match map.get("specversion") {
        None => return Err("missing required attribute specversion".into()),
        Some(Value::String(v)) if v == "1.0" => {}
        Some(other) => {
            return Err(format!(
                "unsupported specversion {other}: wasmfn accepts \"1.0\""
            ));
        }
    }
    for required in ["id", "source", "type"] {
        match map.get(required) {
            None => return Err(format!("missing required attribute {required}")),
            Some(Value::String(_)) => {}
            Some(other) => {
                return Err(format!(
                    "attribute {required} must be a string, got {other}"
                ));
            }
        }
    }
    for name in map.keys() {
        if CONTEXT_ATTRIBUTES.contains(&name.as_str()) || name == "data" || name == "data_base64" {
            continue;
        }
        check_extension_name(name)?;
    }
    Ok(())
}

fn decode_binary(headers: &HeaderMap, body: &[u8]) -> Result<Event, DecodeError> {
    let mut builder = EventBuilderV10::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut dataschema = None;
    let mut ce_content_type = None;
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        if seen.contains(&attr) {
            return Err(malformed(format!(
                "header ce-{attr} appears more than once"
            )));
        }
        seen.push(attr);
        let value = percent_decode(value.as_bytes())
            .map_err(|why| malformed(format!("header ce-{attr}: {why}")))?;
        builder = match attr {
            "specversion" if value == "1.0" => builder,
            "specversion" => {
                return Err(malformed(format!(
                    "unsupported specversion {value:?}: wasmfn accepts 1.0"
                )));
            }
            "id" => builder.id(value),
            "source" => builder.source(value),
            "type" => builder.ty(value),
            "subject" => builder.subject(value),
            "time" => {
                let time = DateTime::parse_from_rfc3339(&value).map_err(|e| {
                    malformed(format!(
                        "header ce-time: {value:?} is not an RFC 3339 time: {e}"
                    ))
                })?;
                builder.time(time.with_timezone(&Utc))
            }
            "dataschema" => {
                dataschema = Some(url::Url::parse(&value).map_err(|e| {
                    malformed(format!(
                        "header ce-dataschema: {value:?} is not an absolute URI: {e}"
                    ))
                })?);
                builder
            }
            "datacontenttype" => {
                ce_content_type = Some(value);
                builder
            }
            "data" | "data_base64" => {
                return Err(malformed(format!(
                    "header ce-{attr}: `{attr}` is not an attribute; in binary mode the data is the body"
                )));
            }
            ext => {
                check_extension_name(ext).map_err(malformed)?;
                builder.extension(ext, value)
            }
        };
    }
    for required in ["id", "source", "type"] {
        if !seen.contains(&required) {
            return Err(malformed(format!(
                "missing required attribute {required} (header ce-{required})"
            )));
        }
    }
    // Binary mode carries datacontenttype as Content-Type; tolerate senders that also (or
    // only) send ce-datacontenttype, as long as the two agree.
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| malformed("Content-Type is not visible ASCII"))
        })
        .transpose()?;
    let content_type = match (content_type, ce_content_type) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(&b) => {
            return Err(malformed(format!(
                "Content-Type {a:?} and ce-datacontenttype {b:?} disagree"
            )));
        }
        (Some(a), _) => Some(a),
        (None, b) => b,
    };
    let data = (!body.is_empty() || content_type.is_some())
        .then(|| data_from_bytes(content_type.as_deref(), body.to_vec()));
    if let (Some(ct), Some(data)) = (&content_type, &data) {
        builder = builder.data(ct.clone(), data.clone());
    }
    let mut event = builder
        .build()
        .map_err(|e| malformed(format!("invalid event: {e}")))?;
    if let (None, Some(data)) = (content_type, data) {
        event.set_data_unchecked(data);
    }
    if dataschema.is_some() {
        event.set_dataschema(dataschema);
    }
    validate(&event).map_err(malformed)?;
    Ok(event)
}

/// Extension names: lowercase ASCII letters and digits (the spec recommends ≤ 20
/// characters; longer names are accepted, as Knative does).
pub(crate) fn check_extension_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "invalid attribute name {name:?}: names are lowercase ASCII letters and digits"
        ));
    }
    if name == "data" || name == "data_base64" {
        return Err(format!("{name:?} is reserved and cannot be an extension"));
    }
    Ok(())
}

/// A URI-reference (RFC 3986 §4.1): non-empty, and only characters a URI may contain.
fn check_uri_reference(attribute: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("attribute {attribute} must not be empty"));
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b);
    match value.bytes().find(|&b| !ok(b)) {
        None => Ok(()),
        Some(b) => Err(format!(
            "attribute {attribute} must be a URI-reference; {:?} may not appear in it unencoded",
            b as char
        )),
    }
}

/// Percent-decodes a `ce-` header value exactly once (HTTP binding §3.1.3.2): every `%` must
/// start a valid escape, the raw bytes must be visible ASCII, and the result must be UTF-8.
fn percent_decode(raw: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a % that does not start a %XX escape")?;
                out.push(hex);
                i += 3;
            }
            // Space and tab are legal in header values but the spec has senders encode
            // them; accept them rather than fail an event over whitespace.
            b @ (b' ' | b'\t' | 0x21..=0x7e) => {
                out.push(b);
                i += 1;
            }
            b => return Err(format!("byte 0x{b:02x} must be percent-encoded")),
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded value is not valid UTF-8".to_string())
}

/// Percent-encodes what HTTP binding §3.1.3.2 requires: space, `"`, `%`, and everything
/// outside U+0021..U+007E (as UTF-8 bytes).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b' ' | b'"' | b'%' => out.push_str(&format!("%{b:02X}")),
            0x21..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        map
    }

    const REQUIRED: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "1"),
        ("ce-source", "/orders"),
        ("ce-type", "order.created"),
    ];

    fn binary(extra: &[(&str, &str)], body: &[u8]) -> Result<Event, DecodeError> {
        let mut all = REQUIRED.to_vec();
        all.extend_from_slice(extra);
        let h = headers(&all);
        assert_eq!(mode_of(&h), Some(Mode::Binary));
        decode(Mode::Binary, &h, body).map(|mut v| v.remove(0))
    }

    fn reason(result: Result<Event, DecodeError>) -> String {
        result.expect_err("should be rejected").to_string()
    }

    #[test]
    fn mode_comes_from_content_type_case_insensitively() {
        let h = headers(&[(
            "content-type",
            "Application/CloudEvents+JSON; charset=utf-8",
        )]);
        assert_eq!(mode_of(&h), Some(Mode::Structured));
        let h = headers(&[("content-type", "APPLICATION/CLOUDEVENTS-BATCH+json")]);
        assert_eq!(mode_of(&h), Some(Mode::Batch));
        let h = headers(&[("content-type", "application/json")]);
        assert_eq!(mode_of(&h), None);
        let h = headers(&[
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
        ]);
        assert_eq!(mode_of(&h), Some(Mode::Binary));
    }

    #[test]
    fn binary_headers_are_percent_decoded_once_as_utf8() {
        let event = binary(
            &[
                ("ce-subject", "caf%C3%A9%20%2541"),
                ("content-type", "text/plain"),
            ],
            b"hi",
        )
        .unwrap();
        // %2541 decodes to the four characters "%41", not to "A": exactly once.
        assert_eq!(event.subject(), Some("café %41"));
        assert_eq!(event.data(), Some(&Data::String("hi".into())));
    }

    #[test]
    fn binary_rejects_bad_escapes_invalid_utf8_and_raw_non_ascii() {
        assert!(reason(binary(&[("ce-subject", "100%")], b"")).contains("%XX"));
        assert!(reason(binary(&[("ce-subject", "%C3%28")], b"")).contains("UTF-8"));
        assert!(reason(binary(&[("ce-subject", "caf\u{e9}")], b"")).contains("percent-encoded"));
    }

    #[test]
    fn control_characters_are_refused_in_every_string_attribute() {
        // Binary: `%00` decodes to NUL, which a CloudEvents string may not hold.
        let e = reason(binary(&[("ce-subject", "a%00b")], b""));
        assert!(
            e.contains("subject contains a control character (U+0000)"),
            "{e}"
        );
        let e = reason(binary(&[("ce-tenant", "x%1By")], b""));
        assert!(
            e.contains("tenant contains a control character (U+001B)"),
            "{e}"
        );
        // Structured: the same through JSON's escapes.
        let body = br#"{"specversion":"1.0","id":"a\u0000b","source":"/s","type":"t"}"#;
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let e = decode(Mode::Structured, &h, body).unwrap_err().to_string();
        assert!(e.contains("id contains a control character"), "{e}");
    }

    #[test]
    fn binary_requires_id_source_type_and_specversion_1_0() {
        let h = headers(&[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")]);
        let e = decode(Mode::Binary, &h, b"").unwrap_err().to_string();
        assert!(e.contains("missing required attribute source"), "{e}");
        let h = headers(&[
            ("ce-specversion", "0.3"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]);
        let e = decode(Mode::Binary, &h, b"").unwrap_err().to_string();
        assert!(e.contains("specversion"), "{e}");
        assert!(reason(binary(&[("ce-id", "")], b"")).contains("appears more than once"));
    }

    #[test]
    fn binary_checks_time_dataschema_source_and_extension_names() {
        assert!(reason(binary(&[("ce-time", "yesterday")], b"")).contains("RFC 3339"));
        assert!(
            reason(binary(&[("ce-dataschema", "relative/path")], b"")).contains("absolute URI")
        );
        assert!(reason(binary(&[("ce-my_ext", "x")], b"")).contains("invalid attribute name"));
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "not%20a%20uri"),
            ("ce-type", "t"),
        ]);
        let e = decode(Mode::Binary, &h, b"").unwrap_err().to_string();
        assert!(e.contains("URI-reference"), "{e}");
        let ok = binary(
            &[
                ("ce-time", "2026-11-21T10:00:00+01:00"),
                ("ce-dataschema", "https://example.com/order.json"),
                (
                    "ce-traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            ],
            b"",
        )
        .unwrap();
        assert_eq!(attribute(&ok, "time").unwrap(), "2026-11-21T09:00:00Z");
        assert!(ok.extension("traceparent").is_some());
    }

    #[test]
    fn binary_content_type_and_ce_datacontenttype_must_agree() {
        let e = reason(binary(
            &[
                ("content-type", "application/json"),
                ("ce-datacontenttype", "text/plain"),
            ],
            b"{}",
        ));
        assert!(e.contains("disagree"), "{e}");
        let ok = binary(&[("ce-datacontenttype", "application/json")], b"{\"a\":1}").unwrap();
        assert_eq!(ok.datacontenttype(), Some("application/json"));
    }

    #[test]
    fn binary_round_trips_through_encode() {
        let event = binary(
            &[
                ("ce-subject", "h%C3%A9llo%20w%22rld"),
                ("ce-partitionkey", "42"),
                ("content-type", "application/json"),
            ],
            br#"{"total":12.5}"#,
        )
        .unwrap();
        let (h, body) = encode(Mode::Binary, std::slice::from_ref(&event));
        assert_eq!(h["ce-subject"], "h%C3%A9llo%20w%22rld");
        assert_eq!(h["content-type"], "application/json");
        let again = decode(Mode::Binary, &h, &body).unwrap().remove(0);
        assert_eq!(again, event);
    }

    #[test]
    fn structured_reads_json_and_base64_data() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t",
            "datacontenttype":"application/octet-stream","data_base64":"AAEC/w=="}"#;
        let event = decode(Mode::Structured, &h, body).unwrap().remove(0);
        assert_eq!(data_bytes(event.data()).as_ref(), &[0, 1, 2, 255]);
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}"#;
        let event = decode(Mode::Structured, &h, body).unwrap().remove(0);
        assert_eq!(event.data(), Some(&Data::Json(serde_json::json!({"a": 1}))));
    }

    #[test]
    fn structured_rejects_what_the_spec_forbids() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let cases: [(&[u8], &str); 7] = [
            (br#"{"id":"1","source":"/s","type":"t"}"#, "specversion"),
            (br#"{"specversion":"1.0","source":"/s","type":"t"}"#, "missing required attribute id"),
            (br#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#, "id must not be empty"),
            (br#"{"specversion":"2.0","id":"1","source":"/s","type":"t"}"#, "specversion"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","Bad-Name":1}"#, "invalid attribute name"),
            (br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#, "data_base64"),
            (b"not json", "not valid JSON"),
        ];
        for (body, expected) in cases {
            let e = decode(Mode::Structured, &h, body).unwrap_err().to_string();
            assert!(e.contains(expected), "{e} should mention {expected}");
        }
        let xml = headers(&[("content-type", "application/cloudevents+xml")]);
        assert!(matches!(
            decode(Mode::Structured, &xml, b"<e/>"),
            Err(DecodeError::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn batches_may_be_empty_and_name_the_bad_event() {
        let h = headers(&[("content-type", "application/cloudevents-batch+json")]);
        assert!(decode(Mode::Batch, &h, b"[]").unwrap().is_empty());
        let body = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},
                       {"specversion":"1.0","id":"2","source":"/s"}]"#;
        let e = decode(Mode::Batch, &h, body).unwrap_err().to_string();
        assert!(
            e.starts_with("event 1: missing required attribute type"),
            "{e}"
        );
        let e = decode(Mode::Batch, &h, b"{}").unwrap_err().to_string();
        assert!(e.contains("JSON array"), "{e}");
    }

    #[test]
    fn encoded_structured_and_batch_decode_to_the_same_events() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","ext1":"v","data":"x","datacontenttype":"text/plain"}"#;
        let event = decode(Mode::Structured, &h, body).unwrap().remove(0);
        for mode in [Mode::Structured, Mode::Batch] {
            let (h, body) = encode(mode, &[event.clone(), event.clone()]);
            let back = decode(mode_of(&h).unwrap(), &h, &body).unwrap();
            assert_eq!(back[0], event);
        }
    }

    #[test]
    fn percent_encoding_covers_space_quote_percent_and_non_ascii() {
        assert_eq!(percent_encode("a b\"c%d\u{e9}"), "a%20b%22c%25d%C3%A9");
        assert_eq!(
            percent_decode(percent_encode("a b\"c%d\u{e9}").as_bytes()).unwrap(),
            "a b\"c%d\u{e9}"
        );
    }
}
