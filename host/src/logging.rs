//! Logs: JSON lines on stdout for Knative's log collection, or human-readable text for a
//! person at a terminal. Written by a background thread, so a request never waits on
//! stdout; the returned guard flushes what is queued (and the last spans) at exit.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_appender::non_blocking::WorkerGuard;
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
    _writer: WorkerGuard,
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            let _ = provider.shutdown();
        }
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
    // Block rather than drop when the queue is full: a lost log line is a lost request id.
    let builder = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false);
    let (writer, guard) = match audience {
        Audience::Server => builder.finish(Box::new(std::io::stdout()) as Box<dyn Write + Send>),
        Audience::Command => builder.finish(Box::new(std::io::stderr()) as Box<dyn Write + Send>),
    };
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
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(tty)
            .with_writer(writer)
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
    LogGuard {
        _writer: guard,
        traces,
    }
}

/// An error and every source under it, `outer: inner: innermost`, as one line: what a
/// client library's top-level message leaves out (the refused connection, the TLS alert).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
