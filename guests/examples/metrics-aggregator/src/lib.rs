//! Windowed aggregation, from the Knative patterns seed, on Redis hashes as the seed keeps
//! them: `metric.recorded` events (`{"key"?, "value"}`; the key defaults to the subject) are
//! counted and summed per key per window of `window_seconds` (default 60), by the event's
//! `time`, with `HINCRBY` and `HINCRBYFLOAT` into one hash per key and window, which
//! `EXPIRE`s on its own if nothing closes it. A schedule (`dev.knative.sources.ping`, a
//! PingSource on Knative) closes every window that ended more than `grace_seconds` (default
//! 5) ago: it reads the hash (`HGETALL`), emits one `metric.recorded.aggregated` event per
//! key and window, `{"key", "window_start", "window_seconds", "count", "sum"}`, and deletes
//! it. Redis is at the variable `redis_url`, which `allowed_outbound_hosts` must allow.
//!
//! A value must be 0 or more. An event for a window that has already closed is rejected,
//! so the broker dead-letters it rather than count it in no window.
use serde::Deserialize;
use serde_json::json;
use wasmfn_sdk::redis::Redis;
use wasmfn_sdk::{CloudEvent, Error, variables};

#[derive(Deserialize)]
struct Metric {
    key: Option<String>,
    value: f64,
}

/// The set of open windows, as `<start>|<key>`, so closing needs no scan of the keyspace.
const WINDOWS: &str = "aggregator:windows";

fn hash(start: i64, key: &str) -> String {
    format!("aggregator:window:{start}:{key}")
}

fn setting(name: &str, default: i64) -> i64 {
    variables::get(name)
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

fn redis() -> Result<Redis, Error> {
    let url = variables::get("redis_url")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::internal("the variable redis_url names no Redis"))?;
    Redis::open(&url)
}

#[wasmfn_sdk::event]
fn aggregate(event: CloudEvent) -> Result<(), Error> {
    let redis = redis()?;
    let (window, grace) = (setting("window_seconds", 60), setting("grace_seconds", 5));
    if event.ty() == "dev.knative.sources.ping" {
        return close(&redis, now(), window, grace);
    }
    let metric: Metric = event.json()?;
    if !(metric.value >= 0.0 && metric.value.is_finite()) {
        return Err(Error::reject(format!(
            "value must be 0 or more, got {}",
            metric.value
        )));
    }
    let key = metric
        .key
        .or_else(|| event.subject().map(str::to_string))
        .unwrap_or_else(|| "all".to_string());
    let at = match event.time() {
        Some(t) => {
            parse_time(t).ok_or_else(|| Error::reject(format!("time {t:?} is not RFC 3339")))?
        }
        None => now(),
    };
    let start = at - at.rem_euclid(window);
    if start + window + grace <= now() {
        return Err(Error::reject(format!(
            "the window of {} for {key} has closed",
            format_time(start)
        )));
    }
    let h = hash(start, &key);
    redis.execute("HINCRBY", &[h.as_str().into(), "count".into(), 1.into()])?;
    redis.execute(
        "HINCRBYFLOAT",
        &[h.as_str().into(), "sum".into(), metric.value.into()],
    )?;
    // A window no schedule closes (the aggregator removed) does not stay forever.
    redis.execute(
        "EXPIRE",
        &[h.as_str().into(), (window + grace + 3600).into()],
    )?;
    redis.sadd(WINDOWS, &[&format!("{start}|{key}")])?;
    Ok(())
}

/// Emits and forgets every window that ended more than `grace` seconds before `now`.
fn close(redis: &Redis, now: i64, window: i64, grace: i64) -> Result<(), Error> {
    let mut closed: Vec<(i64, String)> = redis
        .smembers(WINDOWS)?
        .iter()
        .filter_map(|m| {
            let (start, key) = m.split_once('|')?;
            Some((start.parse().ok()?, key.to_string()))
        })
        .filter(|(start, _)| start + window + grace <= now)
        .collect();
    closed.sort();
    for (start, key) in closed {
        let h = hash(start, &key);
        let fields = redis.hgetall(&h)?;
        let field = |name: &str| {
            fields
                .iter()
                .find(|(f, _)| f == name)
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        // A hash that expired before it was closed has nothing left to say.
        if let (Some(count), Some(sum)) = (field("count"), field("sum")) {
            let aggregate = CloudEvent::new("metric.recorded.aggregated", "/metrics-aggregator")
                .with_id(format!("{key}/{start}"))
                .with_subject(key.clone())
                .with_json(&json!({
                    "key": key, "window_start": format_time(start), "window_seconds": window,
                    "count": count as u64, "sum": sum,
                }))?;
            // Sent before it is forgotten: a failure leaves the window for the next tick.
            wasmfn_sdk::emit(aggregate)?;
        }
        redis.del(&[&h])?;
        redis.srem(WINDOWS, &[&format!("{start}|{key}")])?;
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Seconds since the epoch of an RFC 3339 time (fractions dropped).
fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

fn format_time(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        for t in [
            "1970-01-01T00:00:00Z",
            "2026-11-30T07:44:49Z",
            "2000-02-29T23:59:59Z",
        ] {
            assert_eq!(format_time(parse_time(t).unwrap()), t);
        }
        assert_eq!(
            parse_time("2026-11-30T08:44:49.123+01:00"),
            parse_time("2026-11-30T07:44:49Z")
        );
        assert_eq!(parse_time("2026-11-30"), None);
    }
}
