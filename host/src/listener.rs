//! The accept loop and each connection's life: the connection limit, the header and idle
//! timeouts, and draining on shutdown without dropping a request that reached us.
//!
//! hyper serves the protocol; what it does not decide is when a connection should end.
//! Each connection has a small `ConnState` fed by its socket (bytes read and written) and
//! its service (requests started and finished), and one task that looks at it on a timer
//! and closes the connection when a timeout or the drain says so.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Version, header};
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::admission::{Gate, Slot};
use crate::engine::{BoxError, ResponseBody};
use crate::failure::{Failure, UnreadBody};
use crate::live::LiveApp;
use crate::manifest::ServerLimits;
use crate::metrics::Refusal;

/// When draining, an HTTP/1 connection with no request in flight is closed once it has
/// been quiet this long. Closing it at once would race a request the client may already
/// have sent on it (the keep-alive race); responses during the drain carry
/// `Connection: close`, so a client that is still talking learns to stop.
const DRAIN_QUIET: Duration = Duration::from_millis(250);

/// After answering a request whose body it did not read (413), the host half-closes and
/// reads and discards what the client is still sending, for at most this long and this
/// much, before closing: closing a socket with unread data resets it, and the reset can
/// destroy the response before the client reads it (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// How long a connection asked to close gracefully, with nothing in flight, may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 4 << 20;

/// Serves the live app on `listener` (each request gets the app current when it arrives)
/// on `runtimes` threads, each with a current-thread tokio runtime of its own: this thread
/// accepts, and deals the connections out in turn, each to run on one runtime from its
/// first request to its last. No task or wake-up crosses threads on a request's way, which
/// a work-stealing runtime pays for on every request (benches/README.md); handing a
/// connection over costs two `epoll_ctl`s once. When `shutdown` resolves the host stops
/// accepting, every request that reached it finishes, and this returns once every
/// connection has closed or `drain` has passed.
pub async fn serve(
    listener: TcpListener,
    runtimes: usize,
    live: Arc<LiveApp>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let first = live.app();
    let engine = first.engine().clone();
    let (draining_tx, draining) = watch::channel(false);
    let accept = Accept {
        limits: *first.limits(),
        metrics: first.metrics().clone(),
        connections: Gate::new(first.limits().max_connections, "the connection limit"),
        draining,
        live: live.clone(),
    };
    drop(first);
    let mut handles = vec![tokio::runtime::Handle::current()];
    for n in 1..runtimes.max(1) {
        let (started, handle) = std::sync::mpsc::channel();
        let (mut draining, connections) = (accept.draining.clone(), accept.connections.clone());
        let engine = engine.clone();
        std::thread::Builder::new()
            .name(format!("wasmfn-serve-{n}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(e) => return drop(started.send(Err(e))),
                };
                let _ = started.send(Ok(runtime.handle().clone()));
                // Runs the connections handed to it until the host has drained, and the
                // WASI 0.3 instances started here until they have retired.
                runtime.block_on(async move {
                    let _ = draining.wait_for(|d| *d).await;
                    let _ = tokio::time::timeout(drain, async {
                        connections.wait_idle().await;
                        engine.drained().await;
                    })
                    .await;
                });
            })?;
        handles.push(handle.recv().map_err(std::io::Error::other)??);
    }
    let connections = accept.connections.clone();
    tokio::select! {
        () = accept.run(listener, &handles) => {}
        () = shutdown => {}
    }
    tracing::info!(
        drain_timeout_ms = drain.as_millis() as u64,
        "shutting down: stopped accepting, draining in-flight requests"
    );
    let _ = draining_tx.send(true);
    let until = tokio::time::Instant::now() + drain;
    match tokio::time::timeout_at(until, connections.wait_idle()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            open = connections.capacity() - connections.available(),
            "drain timed out; closing the remaining connections"
        ),
    }
    // Instances that reuse themselves finish what they run and end, rather than being
    // dropped mid-loop with the runtimes.
    engine.drain();
    if tokio::time::timeout_at(until, engine.drained())
        .await
        .is_err()
    {
        tracing::warn!("instances still running at the end of the drain are stopped");
    }
    Ok(())
}

/// What the accept loop and every connection share.
#[derive(Clone)]
struct Accept {
    live: Arc<LiveApp>,
    limits: ServerLimits,
    metrics: Arc<crate::metrics::Metrics>,
    connections: Gate,
    /// Becomes true when the server drains: connections close once quiet.
    draining: watch::Receiver<bool>,
}

impl Accept {
    /// Accepts connections until dropped, dealing them out to `runtimes` in turn.
    async fn run(&self, listener: TcpListener, runtimes: &[tokio::runtime::Handle]) {
        for turn in 0.. {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE/ENFILE: back off instead of spinning, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Responses are often one small write; without NODELAY, Nagle plus delayed ACKs
            // can hold them back for tens of milliseconds.
            let _ = stream.set_nodelay(true);
            let Some(slot) = self.connections.try_enter() else {
                self.metrics.refused(Refusal::Connections);
                tokio::spawn(refuse(stream, self.limits.header_timeout));
                continue;
            };
            let accept = self.clone();
            let runtime = turn % runtimes.len();
            if runtime == 0 {
                // This runtime: the stream stays registered where it is.
                tokio::spawn(async move { accept.connection(stream, peer, slot).await });
                continue;
            }
            // Another: its reactor takes the socket over.
            match stream.into_std() {
                Ok(stream) => drop(runtimes[runtime].spawn(async move {
                    match TcpStream::from_std(stream) {
                        Ok(stream) => accept.connection(stream, peer, slot).await,
                        Err(e) => tracing::warn!(error = %e, "could not hand a connection over"),
                    }
                })),
                Err(e) => tracing::warn!(error = %e, "could not hand a connection over"),
            }
        }
    }

    /// Serves one connection until it ends, on the runtime this runs on.
    async fn connection(self, stream: TcpStream, peer: std::net::SocketAddr, slot: Slot) {
        let state = Arc::new(ConnState::new());
        let service = {
            let (live, state, draining) = (self.live.clone(), state.clone(), self.draining.clone());
            hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (app, state, draining) = (live.app(), state.clone(), draining.clone());
                async move {
                    let version = req.version();
                    let request = state.start_request(version);
                    let mut response = app.handle_from(req, Some(peer)).await;
                    if response.extensions().get::<UnreadBody>().is_some() {
                        state.linger.store(true, Ordering::Relaxed);
                    }
                    // hyper ends an HTTP/1 connection after a response that says so; HTTP/2
                    // has GOAWAY instead (sent by the connection task).
                    if *draining.borrow() && version < Version::HTTP_2 {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response.map(|body| TrackedBody {
                        inner: body,
                        _request: request,
                    }))
                }
            })
        };
        let io = TokioIo::new(TrackedIo {
            inner: Some(stream),
            state: state.clone(),
        });
        let builder = auto::Builder::new(TokioExecutor::new());
        let connection = builder.serve_connection(io, service).into_owned();
        let open = self.metrics.connection();
        let ended = watch_connection(connection, &state, &self.limits, self.draining).await;
        if let Some(reason) = ended.and_then(Close::refusal) {
            self.metrics.refused(reason);
            tracing::debug!(%peer, reason = reason.as_str(), "connection closed");
        }
        drop((slot, open));
    }
}

/// Why the host ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The server is shutting down.
    Drain,
    /// A request head did not arrive in time.
    HeaderTimeout,
    /// No request for the idle timeout.
    IdleTimeout,
}

impl Close {
    /// How the metrics count it; a drain is not a refusal.
    fn refusal(self) -> Option<Refusal> {
        match self {
            Close::Drain => None,
            Close::HeaderTimeout => Some(Refusal::HeaderTimeout),
            Close::IdleTimeout => Some(Refusal::IdleTimeout),
        }
    }
}

/// Runs one connection until it ends; returns why the host ended it, if it did.
async fn watch_connection<C>(
    connection: C,
    state: &ConnState,
    limits: &ServerLimits,
    mut draining: watch::Receiver<bool>,
) -> Option<Close>
where
    C: GracefulConnection<Error = BoxError>,
{
    tokio::pin!(connection);
    // Often enough to keep the timeouts within a quarter of themselves, rarely enough
    // that ten thousand idle connections cost nothing.
    let every = (limits.header_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut drain_started: Option<Instant> = None;
    let mut closing: Option<(Close, Instant)> = None;
    loop {
        let tick = if drain_started.is_some() {
            DRAIN_QUIET / 10
        } else {
            every
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
                return closing.map(|(reason, _)| reason);
            }
            changed = draining.changed(), if drain_started.is_none() => {
                // A closed channel means the server is gone: drain as well.
                if changed.is_err() || *draining.borrow() {
                    drain_started = Some(Instant::now());
                }
            }
            () = tokio::time::sleep(tick) => {}
        }
        if let Some((reason, since)) = closing {
            // hyper normally ends an idle connection at once; one stuck half-way through
            // a head it will never finish is dropped, as long as nothing is in flight.
            if since.elapsed() > CLOSE_GRACE && state.active.load(Ordering::Acquire) == 0 {
                return Some(reason);
            }
            continue;
        }
        let drain_started =
            drain_started.map(|d| d.saturating_duration_since(state.opened).as_millis() as u64);
        match state.verdict(limits, state.now(), drain_started) {
            Verdict::Keep => {}
            // Nothing of a request is in flight: drop the socket.
            Verdict::Drop(reason) => return Some(reason),
            // Let hyper end it cleanly: HTTP/1 closes, HTTP/2 sends GOAWAY and finishes
            // what it has.
            Verdict::Close(reason) => {
                closing = Some((reason, Instant::now()));
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Answers one request on a connection over the limit with 503 and closes it.
async fn refuse(stream: TcpStream, within: Duration) {
    let service = hyper::service::service_fn(|_req: Request<hyper::body::Incoming>| async {
        let id = crate::telemetry::new_request_id();
        let response = Failure::ConnectionLimit.into_response(&id, None, None);
        Ok::<_, Infallible>(crate::server::with_request_id(response, &id))
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(within, connection).await;
}

/// What the connection task should do now.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Close(Close),
    Drop(Close),
}

/// One connection's activity, in milliseconds since it was accepted.
#[derive(Debug)]
struct ConnState {
    opened: Instant,
    /// Requests whose response has not been fully sent.
    active: AtomicUsize,
    seen_request: AtomicBool,
    h2: AtomicBool,
    /// When the first byte of a request head arrived while no request was in flight;
    /// `NONE` when no head is on its way.
    head_started: AtomicU64,
    /// When the last request finished (or the connection opened).
    last_request_end: AtomicU64,
    /// The last byte read or written.
    last_io: AtomicU64,
    /// A response went out without its request body being read.
    linger: AtomicBool,
}

const NONE: u64 = u64::MAX;

impl ConnState {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            active: AtomicUsize::new(0),
            seen_request: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            head_started: AtomicU64::new(NONE),
            last_request_end: AtomicU64::new(0),
            last_io: AtomicU64::new(0),
            linger: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn start_request(self: &Arc<Self>, version: Version) -> RequestGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.seen_request.store(true, Ordering::Relaxed);
        if version >= Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.head_started.store(NONE, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        // HTTP/2 reads frames (pings, window updates) between requests; only HTTP/1
        // bytes between requests are the start of the next head.
        if self.active.load(Ordering::Acquire) == 0 && !self.h2.load(Ordering::Relaxed) {
            let _ =
                self.head_started
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    /// What to do with the connection at `now`; `now` and `drain_started` are in
    /// milliseconds since it was accepted, like the marks it keeps, so the rules read no
    /// clock of their own.
    fn verdict(&self, limits: &ServerLimits, now: u64, drain_started: Option<u64>) -> Verdict {
        if self.active.load(Ordering::Acquire) > 0 {
            // A running request is bounded by its function's deadline, not by us.
            return Verdict::Keep;
        }
        let header_ms = limits.header_timeout.as_millis() as u64;
        let head = self.head_started.load(Ordering::Relaxed);
        if !self.seen_request.load(Ordering::Relaxed) {
            // The first request's head must arrive within the header timeout of the accept.
            if now >= header_ms {
                return Verdict::Drop(Close::HeaderTimeout);
            }
        } else if head != NONE {
            // Part of a head has arrived: let it finish, even while draining, but not
            // slowly (slowloris).
            return if now.saturating_sub(head) >= header_ms {
                Verdict::Drop(Close::HeaderTimeout)
            } else {
                Verdict::Keep
            };
        }
        if let Some(drain_started) = drain_started {
            if self.h2.load(Ordering::Relaxed) {
                return Verdict::Close(Close::Drain);
            }
            let quiet_since = drain_started.max(self.last_io.load(Ordering::Relaxed));
            return if now.saturating_sub(quiet_since) >= DRAIN_QUIET.as_millis() as u64 {
                Verdict::Close(Close::Drain)
            } else {
                Verdict::Keep
            };
        }
        let idle = now.saturating_sub(self.last_request_end.load(Ordering::Relaxed));
        if self.seen_request.load(Ordering::Relaxed)
            && idle >= limits.idle_timeout.as_millis() as u64
        {
            return Verdict::Close(Close::IdleTimeout);
        }
        Verdict::Keep
    }
}

/// Counts a request as in flight until its response body is done or dropped.
#[derive(Debug)]
struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let state = &self.0;
        state.last_request_end.store(state.now(), Ordering::Relaxed);
        state.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted until it has been sent.
struct TrackedBody {
    inner: ResponseBody,
    _request: RequestGuard,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, reporting reads and writes to its connection's state. Always `Some` until
/// dropped.
struct TrackedIo {
    inner: Option<TcpStream>,
    state: Arc<ConnState>,
}

impl TrackedIo {
    fn stream(self: Pin<&mut Self>) -> Pin<&mut TcpStream> {
        Pin::new(self.get_mut().inner.as_mut().expect("used after drop"))
    }
}

impl Drop for TrackedIo {
    fn drop(&mut self) {
        if self.state.linger.load(Ordering::Relaxed)
            && let Some(stream) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(linger(stream));
        }
    }
}

async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 64 * 1024];
    let mut discarded = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while discarded < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = self.as_mut().stream().poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = self.as_mut().stream().poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.state.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = self.as_mut().stream().poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.state.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    //! The rules at chosen instants: every time below is milliseconds since the accept,
    //! passed in, so no test depends on how fast it runs.
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..ServerLimits::default()
        }
    }

    const QUIET: u64 = DRAIN_QUIET.as_millis() as u64;

    /// A connection whose one request finished at `ended`, with its last byte then.
    fn served_once(version: Version, ended: u64) -> Arc<ConnState> {
        let state = Arc::new(ConnState::new());
        drop(state.start_request(version));
        state.last_request_end.store(ended, Ordering::Relaxed);
        state.last_io.store(ended, Ordering::Relaxed);
        state
    }

    #[test]
    fn a_connection_that_sends_no_request_in_time_is_dropped() {
        let state = ConnState::new();
        assert_eq!(state.verdict(&limits(), 99, None), Verdict::Keep);
        assert_eq!(
            state.verdict(&limits(), 100, None),
            Verdict::Drop(Close::HeaderTimeout)
        );
    }

    #[test]
    fn a_slow_head_is_dropped_and_an_idle_connection_closed() {
        let state = served_once(Version::HTTP_11, 1_000);
        assert_eq!(state.verdict(&limits(), 1_000, None), Verdict::Keep);
        // The first byte of the next head arrived at 1 100 and the head is not done.
        state.head_started.store(1_100, Ordering::Relaxed);
        assert_eq!(state.verdict(&limits(), 1_199, None), Verdict::Keep);
        assert_eq!(
            state.verdict(&limits(), 1_200, None),
            Verdict::Drop(Close::HeaderTimeout)
        );
        // No head on its way: idle until 300 ms after the last request.
        state.head_started.store(NONE, Ordering::Relaxed);
        assert_eq!(state.verdict(&limits(), 1_299, None), Verdict::Keep);
        assert_eq!(
            state.verdict(&limits(), 1_300, None),
            Verdict::Close(Close::IdleTimeout)
        );
    }

    #[test]
    fn a_request_in_flight_keeps_its_connection_whatever_the_clock_says() {
        let state = Arc::new(ConnState::new());
        let _request = state.start_request(Version::HTTP_11);
        assert_eq!(state.verdict(&limits(), 10_000, None), Verdict::Keep);
        assert_eq!(state.verdict(&limits(), 10_000, Some(0)), Verdict::Keep);
    }

    #[test]
    fn draining_closes_http1_once_quiet_and_http2_at_once() {
        let state = served_once(Version::HTTP_11, 1_000);
        // Drain starts at 1 000, when the last byte went out: a request may already be on
        // its way until the connection has been quiet for DRAIN_QUIET.
        assert_eq!(
            state.verdict(&limits(), 1_000 + QUIET - 1, Some(1_000)),
            Verdict::Keep,
            "a request may already be on its way"
        );
        assert_eq!(
            state.verdict(&limits(), 1_000 + QUIET, Some(1_000)),
            Verdict::Close(Close::Drain)
        );
        // Quiet since long before the drain: the wait counts from the drain.
        assert_eq!(state.verdict(&limits(), 5_000, Some(5_000)), Verdict::Keep);

        let h2 = served_once(Version::HTTP_2, 1_000);
        assert_eq!(
            h2.verdict(&limits(), 1_000, Some(1_000)),
            Verdict::Close(Close::Drain)
        );
    }
}
