//! The HTTP listener: the accept loop in front of the router, with the limits that keep one
//! client from taking the service down.
//!
//! - A cap on open connections in total and per client address: a connection over either is
//!   answered `503` with `Retry-After` and closed at once, logged (at most every 10 s per
//!   cause) and counted in `taskflow_connections_rejected_total{reason}`.
//! - A header-read timeout: a request's headers must be complete within it, counted from the
//!   first byte of the request (or from the connection's start for its first request), so a
//!   half-sent request or a slowloris trickle is closed.
//! - An idle timeout: a connection on which no byte moved for that long, while no handler is
//!   running, is closed. Live streams write heartbeats, so they stay open; a client that
//!   stops reading a response is closed too.
//!
//! Accept errors (such as running out of file descriptors) are logged and retried after a
//! short pause instead of failing silently.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};
use tower::ServiceExt as _;

/// The largest request head (request line and headers) read.
const MAX_HEAD: usize = 64 * 1024;

/// Connection limits and timeouts; a cap of 0 turns that cap off.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections in total.
    pub max_total: usize,
    /// Open connections from one client address.
    pub max_per_ip: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time a connection may sit with no byte moving while no handler runs.
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_total: 10_000,
            max_per_ip: 512,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ConnLimits {
    /// The total cap lowered to fit the process's open-file limit (leaving room for the
    /// database and log files); `fd_limit` is the soft `RLIMIT_NOFILE`.
    pub fn fit_to_fd_limit(mut self, fd_limit: Option<u64>) -> Self {
        if let Some(limit) = fd_limit {
            let fit = usize::try_from(limit.saturating_sub(64) * 9 / 10).unwrap_or(usize::MAX);
            if self.max_total == 0 || self.max_total > fit {
                tracing::info!(
                    requested = self.max_total,
                    fd_limit = limit,
                    max_connections = fit,
                    "the open-file limit is lower than the connection cap; capping connections to fit"
                );
                self.max_total = fit.max(1);
            }
        }
        self
    }
}

/// The soft open-file limit of this process, from `/proc/self/limits` (Linux).
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let gate = Arc::new(Gate::new(limits));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let accept_errors = LogEvery::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_per_connection(&e) {
                        if accept_errors.due() {
                            tracing::error!(error = %e, open = gate.open(), "cannot accept connections; retrying");
                        }
                        metrics::counter!("taskflow_accept_errors_total").increment(1);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while conns.try_join_next().is_some() {}
        match gate.admit(peer.ip()) {
            Ok(permit) => {
                conns.spawn(connection(
                    stream,
                    peer,
                    router.clone(),
                    permit,
                    limits,
                    closing_rx.clone(),
                ));
            }
            Err(reason) => gate.reject(stream, peer, reason),
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Errors of one connection that was already gone (the listener itself is fine).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    permit: Permit,
    limits: ConnLimits,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
        _permit: permit,
        rewrite: None,
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = activity.begin();
            let response = router.clone().oneshot(req);
            async move {
                let res = response.await;
                drop(busy);
                res
            }
        })
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        // The read buffer, and so the largest request head, is 64 KiB per connection.
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = *closing.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    // Wake at least this often to look at the deadlines, so a trickle that starts after a
    // long sleep began is still cut at about its header timeout.
    let check = (limits.header_timeout / 2).max(Duration::from_millis(100));
    loop {
        let wake = activity.deadline(limits).map_or(check, |d| {
            d.saturating_duration_since(Instant::now()).min(check)
        });
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(wake) => {
                if activity.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    metrics::counter!("taskflow_connections_timed_out_total").increment(1);
                    tracing::debug!(%peer, "closing a connection that timed out");
                    return;
                }
            }
            changed = closing.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What moved on one connection, for its timeouts. Times are milliseconds since `start`.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// When a byte last moved either way.
    last_io: AtomicU64,
    /// When the first byte of a request whose handler has not started yet arrived; `u64::MAX`
    /// when none is pending. The connection's start counts as such a byte.
    head_since: AtomicU64,
    /// Handlers running now.
    busy: AtomicUsize,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_io.store(self.now(), Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// When the connection is to be closed; `None` while a handler runs.
    fn deadline(&self, limits: ConnLimits) -> Option<Instant> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ms = Duration::from_millis;
        let idle = self.start + ms(self.last_io.load(Ordering::Relaxed)) + limits.idle_timeout;
        let head = match self.head_since.load(Ordering::Relaxed) {
            NONE => idle,
            since => self.start + ms(since) + limits.header_timeout,
        };
        Some(idle.min(head))
    }
}

/// A running handler; dropping it ends it.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.last_io.store(self.0.now(), Ordering::Relaxed);
    }
}

/// A TCP stream that records its activity and holds its connection's place under the caps
/// (also after an upgrade to WebSocket, which takes the stream with it).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    _permit: Permit,
    /// hyper's own answer to a request it could not parse, replaced by a problem+json one:
    /// the bytes and how many of them are written.
    rewrite: Option<(Vec<u8>, usize)>,
}

impl Watched {
    /// Writes the replacement of hyper's automatic answer, then reports `len` (the bytes of
    /// hyper's answer, which are dropped) as written.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<usize>> {
        let Some((bytes, done)) = &mut self.rewrite else {
            return Poll::Ready(Ok(0));
        };
        while *done < bytes.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.activity.wrote();
        Poll::Ready(Ok(len))
    }
}

/// hyper answers a request it cannot parse (400) or whose head is over [`MAX_HEAD`] (431;
/// also a URI that long: longer ones get 414 from the router) by itself, with an empty body and before any handler runs. This is
/// that answer as problem+json, like every other error of the API.
fn automatic_problem(buf: &[u8]) -> Option<Vec<u8>> {
    let (status, title, detail) = if buf.starts_with(b"HTTP/1.1 431 ") {
        (
            431,
            "Request Header Fields Too Large",
            "the request's headers are larger than the server accepts (64 KiB in all)",
        )
    } else if buf.starts_with(b"HTTP/1.1 400 ") {
        (400, "Bad Request", "the request is not valid HTTP/1.1")
    } else {
        return None;
    };
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if head.contains("\r\ncontent-type:") || !head.contains("\r\ncontent-length: 0") {
        return None;
    }
    let body = format!(
        r#"{{"type":"about:blank","title":"{title}","status":{status},"detail":"{detail}"}}"#
    );
    Some(
        format!(
            "HTTP/1.1 {status} {title}\r\ncontent-type: application/problem+json\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none() && self.activity.busy.load(Ordering::Relaxed) == 0 {
            self.rewrite = automatic_problem(buf).map(|r| (r, 0));
        }
        if self.rewrite.is_some() {
            return self.poll_rewrite(cx, buf.len());
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.rewrite.is_none() && self.activity.busy.load(Ordering::Relaxed) == 0 {
            let first = bufs.iter().find(|b| !b.is_empty());
            self.rewrite = first.and_then(|b| automatic_problem(b)).map(|r| (r, 0));
        }
        if self.rewrite.is_some() {
            let len = bufs.iter().map(|b| b.len()).sum();
            return self.poll_rewrite(cx, len);
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Total,
    PerIp,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerIp => "per_ip",
        }
    }
}

/// Counts open connections, in total and per client address.
#[derive(Debug)]
struct Gate {
    limits: ConnLimits,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    logged: [LogEvery; 2],
}

impl Gate {
    fn new(limits: ConnLimits) -> Self {
        Self {
            limits,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            logged: [LogEvery::new(), LogEvery::new()],
        }
    }

    fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let max_total = self.limits.max_total;
        if max_total > 0 && self.total.load(Ordering::Relaxed) >= max_total {
            return Err(Refusal::Total);
        }
        if self.limits.max_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = per_ip.entry(ip).or_default();
            if *n >= self.limits.max_per_ip {
                return Err(Refusal::PerIp);
            }
            *n += 1;
        }
        let open = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("taskflow_connections_open").set(open as f64);
        Ok(Permit {
            gate: self.clone(),
            ip,
        })
    }

    fn release(&self, ip: IpAddr) {
        let open = self.total.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("taskflow_connections_open").set(open as f64);
        if self.limits.max_per_ip > 0 {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }

    /// Answers 503 without reading the request (the socket's send buffer is empty, so the
    /// write does not block) and closes.
    fn reject(&self, stream: TcpStream, peer: SocketAddr, reason: Refusal) {
        metrics::counter!("taskflow_connections_rejected_total", "reason" => reason.label())
            .increment(1);
        let (cap, what) = match reason {
            Refusal::Total => (self.limits.max_total, "in total"),
            Refusal::PerIp => (self.limits.max_per_ip, "from one address"),
        };
        if self.logged[reason as usize].due() {
            tracing::warn!(client = %peer.ip(), cap, reason = reason.label(),
                "connection limit reached: {cap} open connections {what}; refusing new ones");
        }
        let detail =
            format!("too many open connections {what} (at most {cap}); retry in a few seconds");
        let body = format!(
            r#"{{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"{detail}"}}"#
        );
        let head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
             retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let _ = stream.try_write(format!("{head}{body}").as_bytes());
    }
}

/// A connection's place under the caps, given back when it closes.
struct Permit {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release(self.ip);
    }
}

/// Lets a repeated warning through at most every 10 seconds.
#[derive(Debug)]
struct LogEvery {
    start: Instant,
    next: AtomicU64,
}

impl LogEvery {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            next: AtomicU64::new(0),
        }
    }

    fn due(&self) -> bool {
        let now = self.start.elapsed().as_secs();
        let next = self.next.load(Ordering::Relaxed);
        now >= next
            && self
                .next
                .compare_exchange(next, now + 10, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize) -> ConnLimits {
        ConnLimits {
            max_total: total,
            max_per_ip: per_ip,
            ..ConnLimits::default()
        }
    }

    #[test]
    fn only_hypers_bodiless_error_answers_are_rewritten() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let ours = automatic_problem(bare).expect("rewritten");
        let text = String::from_utf8(ours).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("application/problem+json") && text.contains(r#""status":431"#));
        let problem = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: 10\r\n\r\n";
        assert!(automatic_problem(problem).is_none());
        assert!(automatic_problem(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }

    #[test]
    fn the_gate_counts_per_address_and_gives_places_back() {
        let gate = Arc::new(Gate::new(limits(3, 2)));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let a1 = gate.admit(a).expect("first");
        let _a2 = gate.admit(a).expect("second");
        assert!(matches!(gate.admit(a), Err(Refusal::PerIp)));
        let _b1 = gate.admit(b).expect("another address");
        assert!(matches!(gate.admit(b), Err(Refusal::Total)));
        drop(a1);
        assert!(gate.admit(a).is_ok());
    }

    #[test]
    fn the_total_cap_fits_under_the_open_file_limit() {
        assert_eq!(limits(10_000, 0).fit_to_fd_limit(Some(1024)).max_total, 864);
        assert_eq!(limits(100, 0).fit_to_fd_limit(Some(1024)).max_total, 100);
        assert_eq!(limits(100, 0).fit_to_fd_limit(None).max_total, 100);
    }

    #[test]
    fn a_pending_request_head_has_the_shorter_deadline() {
        let l = ConnLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..ConnLimits::default()
        };
        let a = Arc::new(Activity::new());
        // A new connection must send its first request within the header timeout.
        let d = a.deadline(l).expect("idle");
        assert!(d <= a.start + Duration::from_secs(10));
        // While a handler runs there is no deadline; afterwards the idle timeout counts.
        let busy = a.begin();
        assert!(a.deadline(l).is_none());
        drop(busy);
        let d = a.deadline(l).expect("idle");
        assert!(d > a.start + Duration::from_secs(50));
        // The first byte of the next request starts its header timeout.
        a.read();
        assert!(a.deadline(l).expect("idle") <= Instant::now() + Duration::from_secs(10));
    }
}
