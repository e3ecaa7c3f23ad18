//! Logs: JSON lines on stdout for Knative's log collection, or human-readable text for a
//! person at a terminal. Lines gather in memory and a background thread writes them in
//! batches ([`Batched`]), so a request neither waits on stdout nor wakes a thread; the
//! returned guard writes what is left (and the last spans) at exit.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text at a terminal, JSON otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable `key=value` lines.
    Text,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether lines are JSON; fields that hold free text are recorded so that each format
/// stays one line per event and readable.
pub fn is_json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Keeps log lines and spans flowing until dropped at exit, then flushes both.
pub struct LogGuard {
    writer: Batched,
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            let _ = provider.shutdown();
        }
        self.writer.stop();
    }
}

/// How long a line may wait in memory before the writer thread writes it.
const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Past this much waiting, the writer thread is woken at once.
const BATCH_BYTES: usize = 64 * 1024;
/// Past this much waiting (stdout blocked, the writer behind), a line is written by the
/// thread that logs it: the host slows down rather than lose lines or grow without bound.
const MAX_PENDING_BYTES: usize = 8 << 20;

/// Log lines gathered in memory and written by one thread, every `FLUSH_EVERY` or once
/// `BATCH_BYTES` have gathered. A line costs its writer a lock and a copy; a channel
/// to a writer thread would wake it for every line, which on a host pinned to one core
/// is a context switch per request (about a tenth of a small request's cost, measured in
/// benches/README.md). Lines are never dropped.
#[derive(Clone)]
pub struct Batched {
    shared: Arc<BatchedShared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

struct BatchedShared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
    out: Mutex<Box<dyn Write + Send>>,
}

impl BatchedShared {
    /// Writes what is pending, then `more`. The output's lock is taken before the pending
    /// lines are, by this and by the writer thread alike, so batches go out in the order
    /// they were taken (stdout's errors have nowhere to go but away).
    fn write_pending(&self, batch: &mut Vec<u8>, more: &[u8]) {
        let mut out = self.out.lock().unwrap();
        std::mem::swap(&mut *self.pending.lock().unwrap(), batch);
        if !batch.is_empty() || !more.is_empty() {
            let _ = out.write_all(batch);
            let _ = out.write_all(more);
            let _ = out.flush();
        }
        batch.clear();
    }
}

impl Batched {
    /// Lines to `out`, written by a thread of their own.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        let shared = Arc::new(BatchedShared {
            pending: Mutex::new(Vec::with_capacity(BATCH_BYTES)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            out: Mutex::new(out),
        });
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("wasmfn-log".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH_BYTES);
                loop {
                    let pending = writer.pending.lock().unwrap();
                    let _ = writer
                        .wake
                        .wait_timeout_while(pending, FLUSH_EVERY, |p| {
                            p.len() < BATCH_BYTES && !writer.stop.load(Ordering::Relaxed)
                        })
                        .unwrap();
                    writer.write_pending(&mut batch, &[]);
                    if writer.stop.load(Ordering::Relaxed)
                        && writer.pending.lock().unwrap().is_empty()
                    {
                        return;
                    }
                }
            })
            .expect("spawning the log writer thread");
        Self {
            shared,
            thread: Arc::new(Mutex::new(Some(thread))),
        }
    }

    /// Writes what is pending and stops the thread.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Batched {
    type Writer = BatchedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        BatchedLine(&self.shared)
    }
}

/// One log line on its way into a [`Batched`] writer.
pub struct BatchedLine<'a>(&'a BatchedShared);

impl Write for BatchedLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let shared = self.0;
        let mut pending = shared.pending.lock().unwrap();
        // After `stop` the thread is gone: a late line is written here.
        if pending.len() + bytes.len() > MAX_PENDING_BYTES || shared.stop.load(Ordering::Relaxed) {
            drop(pending);
            shared.write_pending(&mut Vec::new(), bytes);
            return Ok(bytes.len());
        }
        let was_short = pending.len() < BATCH_BYTES;
        pending.extend_from_slice(bytes);
        if was_short && pending.len() >= BATCH_BYTES {
            shared.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Who reads the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// A server's operators: lines on stdout from `info` up.
    Server,
    /// A person running a one-shot command (`invoke`, `send`, `check`, ...), whose stdout
    /// is the command's answer: lines on stderr, warnings and guest output only.
    Command,
}

/// Installs the global subscriber: log lines at the level of `RUST_LOG`, else `LOG_LEVEL`
/// (default: `info` for a server, see [`Audience`]),
/// and spans to OTLP when [`crate::telemetry`] is configured.
pub fn init(format: LogFormat, audience: Audience) -> LogGuard {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let tty = match audience {
        Audience::Server => std::io::stdout().is_terminal(),
        Audience::Command => std::io::stderr().is_terminal(),
    };
    let json = match format {
        LogFormat::Auto => !tty,
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    JSON.store(json, Ordering::Relaxed);
    let writer = Batched::new(match audience {
        Audience::Server => Box::new(std::io::stdout()),
        Audience::Command => Box::new(std::io::stderr()),
    });
    // RUST_LOG takes directives per module; LOG_LEVEL (error, warn, info, debug, trace) is
    // the plain level deployments commonly set, as the Knative seed does.
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let filter = set("RUST_LOG")
        .or_else(|| set("LOG_LEVEL").map(|level| level.to_lowercase()))
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| {
            EnvFilter::new(match audience {
                Audience::Server => "info",
                Audience::Command => "warn,wasmfn::guest=info",
            })
        });
    let lines = if json {
        tracing_subscriber::fmt::layer()
            .event_format(JsonLine)
            .with_writer(writer.clone())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(tty)
            .with_writer(writer.clone())
            .boxed()
    };
    let traces = crate::telemetry::provider();
    // Spans are exported whatever RUST_LOG says; only the host's own spans exist.
    let spans = traces.as_ref().map(|p| {
        crate::telemetry::layer(p).with_filter(tracing_subscriber::filter::filter_fn(|m| {
            m.is_span() && m.target().starts_with("wasmfn")
        }))
    });
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .init();
    LogGuard { writer, traces }
}

/// One JSON object per event, written field by field: the keys and values
/// tracing-subscriber's JSON format gives (`timestamp`, `level`, the fields flattened,
/// `message` among them, `target`), without building a map of the fields first. Every
/// request writes one, its access line, so this is on the request path (benches/README.md).
struct JsonLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut line = JsonFields(Vec::with_capacity(320));
        line.0.extend_from_slice(b"{\"timestamp\":\"");
        push_timestamp(&mut line.0, std::time::SystemTime::now());
        line.0.extend_from_slice(b"\",\"level\":\"");
        line.0.extend_from_slice(meta.level().as_str().as_bytes());
        line.0.push(b'"');
        event.record(&mut line);
        line.key("target");
        line.string(meta.target());
        line.0.extend_from_slice(b"}\n");
        // Only UTF-8 went in: the escaped strings and the numbers.
        writer.write_str(std::str::from_utf8(&line.0).map_err(|_| std::fmt::Error)?)
    }
}

/// `now` as RFC 3339 in UTC with microseconds, as humantime writes it. The part up to the
/// seconds changes once a second: it is formatted then, and kept per thread (formatting
/// the whole of it for every line cost ~0.7 k instructions; callgrind, issue 29).
fn push_timestamp(out: &mut Vec<u8>, now: std::time::SystemTime) {
    use std::cell::RefCell;
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    SECOND.with_borrow_mut(|(secs, prefix)| {
        if *secs != since.as_secs() {
            let whole = std::time::UNIX_EPOCH + Duration::from_secs(since.as_secs());
            // `2026-12-07T15:15:00Z` without its `Z`.
            *prefix = humantime::format_rfc3339_seconds(whole).to_string();
            prefix.pop();
            *secs = since.as_secs();
        }
        out.extend_from_slice(prefix.as_bytes());
    });
    // `.` and six digits: the leading 1 of 1_000_000 + micros becomes the dot.
    let mut digits = itoa::Buffer::new();
    let micros = digits.format(1_000_000 + since.subsec_micros());
    out.push(b'.');
    out.extend_from_slice(&micros.as_bytes()[1..]);
    out.push(b'Z');
}

/// The fields of an event as `,"name":value` pairs.
struct JsonFields(Vec<u8>);

impl JsonFields {
    fn key(&mut self, name: &str) {
        self.0.push(b',');
        self.string(name);
        self.0.push(b':');
    }

    /// A JSON string.
    fn string(&mut self, value: &str) {
        self.0.push(b'"');
        escape_into(&mut self.0, value);
        self.0.push(b'"');
    }

    fn number(&mut self, value: impl itoa::Integer) {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }
}

/// Appends `s` escaped as the inside of a JSON string (RFC 8259 §7): runs that need no
/// escape, which is all of most fields, are found by table and copied whole.
fn escape_into(out: &mut Vec<u8>, s: &str) {
    const NEEDS_ESCAPE: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 0x20 {
            table[b] = true;
            b += 1;
        }
        table[b'"' as usize] = true;
        table[b'\\' as usize] = true;
        table
    };
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(run) = bytes[start..]
        .iter()
        .position(|&b| NEEDS_ESCAPE[usize::from(b)])
    {
        let at = start + run;
        out.extend_from_slice(&bytes[start..at]);
        match bytes[at] {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            control => {
                let _ = write!(out, "\\u{control:04x}");
            }
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Escapes what a `Debug` or `Display` implementation writes straight into the line.
struct Escaping<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

impl tracing::field::Visit for JsonFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.key(field.name());
        self.string(value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.key(field.name());
        self.0.push(b'"');
        let _ = std::fmt::Write::write_fmt(&mut Escaping(&mut self.0), format_args!("{value:?}"));
        self.0.push(b'"');
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.key(field.name());
        self.number(value);
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.key(field.name());
        self.number(value);
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.key(field.name());
        self.0
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.key(field.name());
        match value.is_finite() {
            true => {
                let _ = write!(self.0, "{value}");
            }
            false => self.0.extend_from_slice(b"null"),
        }
    }
}

/// An error and every source under it, `outer: inner: innermost`, as one line: what a
/// client library's top-level message leaves out (the refused connection, the TLS alert).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // Some libraries already print their cause in their own message (tokio-postgres'
        // "db error: FATAL: ..."): say it once.
        let cause = s.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer the test can read back, counting the writes it was given.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>, Arc<std::sync::atomic::AtomicUsize>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines `subscriber` writes for a few events of every field type.
    fn lines_of(
        format: impl Fn(Sink) -> Box<dyn tracing::Subscriber + Send + Sync>,
    ) -> Vec<serde_json::Value> {
        let sink = Sink::default();
        tracing::subscriber::with_default(format(sink.clone()), || {
            let id = "6f1c";
            tracing::info!(
                function = "hello", version = "", request_id = %id, status = 200u16,
                elapsed_us = 1214u64, delta = -3i64, pooling = true, startup_ms = 96.65814999999999,
                path = "/a \"quoted\"\n\tpath\u{1}é", "request"
            );
            tracing::warn!(error = ?std::io::Error::other("disk \"full\""), "cannot write");
            tracing::error!("no fields");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn timestamps_and_strings_are_written_as_humantime_and_serde_json_write_them() {
        let base = std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        for offset_us in [0, 1, 999_999, 1_000_000, 1_000_001, 86_400_000_000] {
            let t = base + Duration::from_micros(offset_us);
            let mut ours = Vec::new();
            push_timestamp(&mut ours, t);
            let theirs = humantime::format_rfc3339_micros(t).to_string();
            assert_eq!(String::from_utf8(ours).unwrap(), theirs);
        }
        for s in [
            "",
            "plain",
            "a \"quoted\"\\path\n\r\t\u{1}\u{1f}\u{7f} é ✓",
            "\u{8}\u{c}",
        ] {
            let mut ours = JsonFields(Vec::new());
            ours.string(s);
            let ours = String::from_utf8(ours.0).unwrap();
            let back: String =
                serde_json::from_str(&ours).unwrap_or_else(|e| panic!("{e}: {ours}"));
            assert_eq!(back, s);
        }
    }

    #[test]
    fn json_lines_carry_what_tracing_subscribers_json_format_does() {
        let ours = lines_of(|sink| {
            Box::new(
                tracing_subscriber::fmt()
                    .event_format(JsonLine)
                    .with_writer(move || sink.clone())
                    .finish(),
            )
        });
        let theirs = lines_of(|sink| {
            Box::new(
                tracing_subscriber::fmt()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(move || sink.clone())
                    .finish(),
            )
        });
        assert_eq!(ours.len(), 3);
        for (mut ours, mut theirs) in ours.into_iter().zip(theirs) {
            let time = ours["timestamp"].take();
            let time = time.as_str().unwrap();
            assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
            theirs["timestamp"].take();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn batched_lines_arrive_whole_in_order_in_few_writes() {
        let sink = Sink::default();
        let batched = Batched::new(Box::new(sink.clone()));
        let lines: Vec<String> = (0..5_000).map(|i| format!("line {i}\n")).collect();
        for line in &lines {
            batched.make_writer().write_all(line.as_bytes()).unwrap();
        }
        // Within a flush interval they are written without a stop, in batches: far fewer
        // writes than lines.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.0.lock().unwrap().len() < lines.concat().len() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(FLUSH_EVERY);
        }
        let writes = sink.1.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            writes * 10 < lines.len(),
            "{writes} writes for {} lines",
            lines.len()
        );
        // A flood past the pending limit is written by the logging thread itself.
        let big = vec![b'x'; MAX_PENDING_BYTES / 4];
        for _ in 0..6 {
            batched.make_writer().write_all(&big).unwrap();
        }
        batched.make_writer().write_all(b"last\n").unwrap();
        batched.stop();
        let written = sink.0.lock().unwrap().clone();
        let text = String::from_utf8(written).unwrap();
        assert!(text.starts_with(&lines.concat()));
        assert_eq!(text.len(), lines.concat().len() + 6 * big.len() + 5);
        assert!(text.ends_with("last\n"));
        // After stop, a line is still written, at once.
        batched.make_writer().write_all(b"late\n").unwrap();
        assert!(sink.0.lock().unwrap().ends_with(b"late\n"));
    }
}
