//! Units and limits: the durations, sizes and counts a manifest writes as text, and the
//! host-wide `[server]` limits. Every parser names the key, what was expected and where.

use std::time::Duration;

use toml::Spanned;

use super::{Ctx, ManifestError, RawServer};

/// How long a function may run when the manifest does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The memory a function may use when the manifest does not say.
pub const DEFAULT_MEMORY: u64 = 128 * 1024 * 1024;
/// Knative's own ceiling on a revision's request timeout (`timeoutSeconds` ≤ 600).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// A 32-bit linear memory cannot exceed 4 GiB.
pub const MAX_MEMORY: u64 = 4 * 1024 * 1024 * 1024;
/// Below this no Rust or Python guest starts.
pub const MIN_MEMORY: u64 = 1024 * 1024;
/// The largest request body a function accepts when the manifest does not say.
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;

/// Requests one instance serves before it is retired, when `reuse` does not say.
pub const DEFAULT_REUSE_MAX_REQUESTS: u32 = 128;
/// Requests one WASI 0.3 instance serves at once, when `reuse` does not say.
pub const DEFAULT_REUSE_MAX_CONCURRENT: u32 = 16;
/// How long an instance waits idle for another request, when `reuse` does not say.
pub const DEFAULT_REUSE_IDLE: Duration = Duration::from_secs(1);

/// `reuse = { max_requests, max_concurrent, idle }`: how many requests one instance serves,
/// in all and at once, and how long it waits idle for the next. Unset keys take the
/// defaults above, which are `wasmtime serve`'s for WASI 0.3 components. A WASI 0.3
/// function reuses instances with or without this key; a WASI 0.2 function only with it
/// (a fresh instance per request isolates requests from each other's globals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reuse {
    /// Requests one instance serves before it is retired.
    pub max_requests: Option<u32>,
    /// Requests one instance serves at once (1 for WASI 0.2).
    pub max_concurrent: Option<u32>,
    /// How long an idle instance is kept for the next request.
    pub idle: Option<Duration>,
}

impl Reuse {
    /// `max_requests`, or its default.
    pub fn max_requests_or_default(&self) -> u32 {
        self.max_requests.unwrap_or(DEFAULT_REUSE_MAX_REQUESTS)
    }

    /// `max_concurrent`, or its default.
    pub fn max_concurrent_or_default(&self) -> u32 {
        self.max_concurrent.unwrap_or(DEFAULT_REUSE_MAX_CONCURRENT)
    }

    /// `idle`, or its default.
    pub fn idle_or_default(&self) -> Duration {
        self.idle.unwrap_or(DEFAULT_REUSE_IDLE)
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReuse {
    max_requests: Option<Spanned<i64>>,
    max_concurrent: Option<Spanned<i64>>,
    idle: Option<Spanned<String>>,
}

pub(super) fn parse_reuse(ctx: &Ctx<'_>, raw: &RawReuse) -> Result<Reuse, ManifestError> {
    let count = |key: &str, n: &Option<Spanned<i64>>| {
        n.as_ref().map(|n| parse_count(ctx, key, n)).transpose()
    };
    Ok(Reuse {
        max_requests: count("reuse.max_requests", &raw.max_requests)?,
        max_concurrent: count("reuse.max_concurrent", &raw.max_concurrent)?,
        idle: raw
            .idle
            .as_ref()
            .map(|t| parse_duration(ctx, "reuse.idle", t, Duration::from_secs(3600), "1h"))
            .transpose()?,
    })
}

/// Host-wide limits: what one host accepts before it answers 503 instead of queueing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open client connections; more are answered 503 and closed.
    pub max_connections: u32,
    /// Requests being handled at once (HTTP and CloudEvents, waiting ones included).
    pub max_in_flight: u32,
    /// Functions kept loaded (compiled code mapped, pre-instantiated) at once. Up to this
    /// many are loaded, and checked, at start; the rest load on their first request, and
    /// the least recently used are unloaded to make room.
    pub loaded_functions: u32,
    /// How long a request may wait for a free slot (host, function or instance pool)
    /// before it is answered 503 with `Retry-After`.
    pub queue_timeout: Duration,
    /// How long a client may take to send a request's headers: from accepting the
    /// connection for its first request, from the first byte for later ones (slowloris).
    pub header_timeout: Duration,
    /// How long a connection with no request in flight stays open.
    pub idle_timeout: Duration,
}

/// Functions kept loaded by default: a manifest of up to this many is loaded and checked
/// whole at start, and start-up stays in milliseconds (each load maps a precompiled
/// component, ~0.5-1 ms) however many functions are configured.
pub const DEFAULT_LOADED_FUNCTIONS: u32 = 100;

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_in_flight: 1_000,
            loaded_functions: DEFAULT_LOADED_FUNCTIONS,
            queue_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(10),
            // Longer than the idle timeout of Go's HTTP transport (90 s), which Knative's
            // queue-proxy uses, so the proxy closes an idle connection before we do and
            // never sends a request into one we are closing.
            idle_timeout: Duration::from_secs(120),
        }
    }
}

pub(super) fn parse_timeout(ctx: &Ctx<'_>, t: &Spanned<String>) -> Result<Duration, ManifestError> {
    parse_duration(ctx, "timeout", t, MAX_TIMEOUT, "600s (Knative's limit)")
}

/// A duration for `key`, as text such as "5s" or "250ms".
pub(super) fn duration(
    ctx: &Ctx<'_>,
    key: &str,
    t: &Spanned<String>,
) -> Result<Duration, ManifestError> {
    humantime::parse_duration(t.get_ref()).map_err(|e| {
        ctx.error(
            t.span(),
            format!(
                "`{key}` must be a duration such as \"5s\" or \"250ms\", got {:?}: {e}",
                t.get_ref()
            ),
        )
    })
}

/// A duration for `key`: more than zero and at most `max` (`max_text` says it for people).
pub(super) fn parse_duration(
    ctx: &Ctx<'_>,
    key: &str,
    t: &Spanned<String>,
    max: Duration,
    max_text: &str,
) -> Result<Duration, ManifestError> {
    let d = duration(ctx, key, t)?;
    if d.is_zero() || d > max {
        return Err(ctx.error(
            t.span(),
            format!(
                "`{key}` must be more than 0 and at most {max_text}, got {:?}",
                t.get_ref()
            ),
        ));
    }
    Ok(d)
}

pub(super) fn parse_memory(ctx: &Ctx<'_>, m: &Spanned<String>) -> Result<u64, ManifestError> {
    parse_size(ctx, "memory", m, MIN_MEMORY, MAX_MEMORY)
}

pub(super) fn parse_size(
    ctx: &Ctx<'_>,
    key: &str,
    m: &Spanned<String>,
    min: u64,
    max: u64,
) -> Result<u64, ManifestError> {
    let size: bytesize::ByteSize = m.get_ref().parse().map_err(|e| {
        ctx.error(
            m.span(),
            format!(
                "`{key}` must be a size such as \"64MiB\", got {:?}: {e}",
                m.get_ref()
            ),
        )
    })?;
    let bytes = size.as_u64();
    if !(min..=max).contains(&bytes) {
        return Err(ctx.error(
            m.span(),
            format!(
                "`{key}` must be between {:.0} and {:.0}, got {:?}",
                bytesize::ByteSize(min).display().iec(),
                bytesize::ByteSize(max).display().iec(),
                m.get_ref()
            ),
        ));
    }
    Ok(bytes)
}

/// A positive count that fits the semaphores it sizes.
pub(super) fn parse_count(
    ctx: &Ctx<'_>,
    key: &str,
    n: &Spanned<i64>,
) -> Result<u32, ManifestError> {
    match u32::try_from(*n.get_ref()) {
        Ok(v) if (1..=1_000_000).contains(&v) => Ok(v),
        _ => Err(ctx.error(
            n.span(),
            format!(
                "`{key}` must be a whole number from 1 to 1000000, got {}",
                n.get_ref()
            ),
        )),
    }
}

pub(super) fn server_limits(ctx: &Ctx<'_>, raw: &RawServer) -> Result<ServerLimits, ManifestError> {
    let mut limits = ServerLimits::default();
    if let Some(n) = &raw.max_connections {
        limits.max_connections = parse_count(ctx, "server.max_connections", n)?;
    }
    if let Some(n) = &raw.max_in_flight {
        limits.max_in_flight = parse_count(ctx, "server.max_in_flight", n)?;
    }
    if let Some(n) = &raw.loaded_functions {
        limits.loaded_functions = parse_count(ctx, "server.loaded_functions", n)?;
    }
    for (key, value, slot) in [
        (
            "queue_timeout",
            &raw.queue_timeout,
            &mut limits.queue_timeout,
        ),
        (
            "header_timeout",
            &raw.header_timeout,
            &mut limits.header_timeout,
        ),
        ("idle_timeout", &raw.idle_timeout, &mut limits.idle_timeout),
    ] {
        if let Some(t) = value {
            *slot = parse_duration(
                ctx,
                &format!("server.{key}"),
                t,
                Duration::from_secs(3600),
                "1h",
            )?;
        }
    }
    Ok(limits)
}
