//! The HTTPS admission endpoint and the plain-HTTP metrics endpoint: axum routes, a rustls
//! accept loop speaking HTTP/1.1 and HTTP/2, input limits, and graceful shutdown.
//!
//! The handlers never block a pod: anything the injector cannot use is answered `allowed` with
//! no patch (and a warning when the user should know), except bodies that are not an
//! AdmissionReview at all, which get a 4xx that kube-apiserver treats per `failurePolicy`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::admission::ports::{CopyMaker, NamespaceWait, RegistriesSeen};
use crate::admission::repeat::{Lookup, Repeats};
use crate::admission::slot::{Slot, Snapshot};
use crate::admission::{self, Reviewed, Verdict};
use crate::metrics::{Metrics, RequestLabels};
use crate::tls::{ClientCa, ServingCert, TlsError};

/// Bounds on what one client can make the server hold or wait for.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Admission requests handled at once; more wait for a slot.
    pub max_concurrent: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed for a request's headers once a connection has sent its first byte
    /// (HTTP/1.1).
    pub header_timeout: Duration,
    /// Time allowed for a request's body (408 after it).
    pub body_timeout: Duration,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Reviews are answered only over connections that presented a client certificate
    /// verified against `--client-ca` (the probes' paths stay open).
    pub require_client_cert: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            max_concurrent: 64,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            require_client_cert: false,
        }
    }
}

/// What the handlers share: the serving slot, the ports cluster mode hands in, and limits.
pub struct App {
    slot: Arc<Slot>,
    // Answers reviews (with no patch) while no snapshot is served.
    empty: Snapshot,
    shutting_down: AtomicBool,
    permits: Semaphore,
    /// Bodies being read to their end after an early rejection (see [`refuse`]).
    drains: Arc<Semaphore>,
    limits: Limits,
    copier: OnceLock<Arc<dyn CopyMaker>>,
    namespaces: OnceLock<Arc<dyn NamespaceWait>>,
    registries: OnceLock<Arc<dyn RegistriesSeen>>,
    /// Answers to reviews that repeat but for their uid.
    repeats: Repeats,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("slot", &self.slot)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A server answering from `slot`.
    pub fn new(slot: Arc<Slot>, limits: Limits) -> Arc<App> {
        Arc::new(App {
            slot,
            empty: Snapshot::empty(),
            copier: OnceLock::new(),
            namespaces: OnceLock::new(),
            registries: OnceLock::new(),
            repeats: Repeats::new(),
            shutting_down: AtomicBool::new(false),
            permits: Semaphore::new(limits.max_concurrent.max(1)),
            drains: Arc::new(Semaphore::new(MAX_DRAINS)),
            limits,
        })
    }

    /// The slot reviews are answered from.
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }

    /// Makes copies at admission from now on (cluster mode). Only the first call counts.
    pub fn set_copier(&self, copier: Arc<dyn CopyMaker>) {
        let _ = self.copier.set(copier);
    }

    /// Waits for unknown namespaces from now on (cluster mode). Only the first call counts.
    pub fn set_namespace_wait(&self, wait: Arc<dyn NamespaceWait>) {
        let _ = self.namespaces.set(wait);
    }

    /// Tells the verifier of the registries glob keys reached (cluster mode). Only the first
    /// call counts.
    pub fn set_registries_seen(&self, seen: Arc<dyn RegistriesSeen>) {
        let _ = self.registries.set(seen);
    }

    /// Whether a snapshot is served and the server is not shutting down.
    pub fn is_ready(&self) -> bool {
        self.slot.is_serving() && !self.shutting_down.load(Ordering::Relaxed)
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.slot.metrics()
    }

    /// The admission router: `POST /mutate`, `GET /healthz`, `GET /readyz`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/mutate", post(mutate))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    /// The metrics router: `GET /metrics`.
    pub fn metrics_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.shutting_down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if app.slot.is_serving() {
        return "ok\n".into_response();
    }
    let reason = app.slot.not_ready_reason();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: {reason}\n"),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        app.metrics().render(),
    )
        .into_response()
}

fn reject(app: &App, status: StatusCode, message: String) -> Response {
    app.metrics().admission(
        &RequestLabels {
            kind: "unknown",
            operation: "unknown",
            outcome: Verdict::Rejected.as_str(),
        },
        None,
    );
    tracing::warn!(
        status = status.as_u16(),
        "admission request rejected: {message}"
    );
    (status, format!("{message}\n")).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// At most this many rejected bodies are read to their end at once; past it, one is dropped
/// (the connection or stream is reset, as before).
const MAX_DRAINS: usize = 16;
/// A rejected body is read on for at most this many bytes...
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;
/// ...and this long.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Why a body was not used, and the body itself when it was left unread.
struct Refusal {
    status: StatusCode,
    message: String,
    unread: Option<Body>,
}

/// The body, whole, within the size and time limits. Read frame by frame rather than through
/// `Limited`, so that a body refused half-way is kept (see [`refuse`]).
async fn read_body(app: &App, declared: Option<u64>, mut body: Body) -> Result<Bytes, Refusal> {
    let limit = app.limits.max_body_bytes;
    let too_large = |unread| Refusal {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body is larger than the {limit}-byte limit"),
        unread,
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(Some(body)));
    }
    let deadline = tokio::time::Instant::now() + app.limits.body_timeout;
    // Most bodies come in one frame: kept as it came, without a copy.
    let mut first: Option<Bytes> = None;
    let mut more: Vec<u8> = Vec::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                return Err(Refusal {
                    status: StatusCode::REQUEST_TIMEOUT,
                    message: format!(
                        "request body not received within {:?}",
                        app.limits.body_timeout
                    ),
                    unread: Some(body),
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(Refusal {
                    status: StatusCode::BAD_REQUEST,
                    message: format!("cannot read the request body: {e}"),
                    unread: None,
                });
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let held = first.as_ref().map_or(0, Bytes::len) + more.len();
        if held + data.len() > limit {
            return Err(too_large(Some(body)));
        }
        match &first {
            None => first = Some(data),
            Some(f) => {
                if more.is_empty() {
                    more.extend_from_slice(f);
                }
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(if more.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(more)
    })
}

/// Answers a request refused before its body was read to the end so that the client can read
/// the status. Dropping an unread body resets what carries it: over HTTP/2 hyper sends
/// RST_STREAM(CANCEL) before the response when the body goes first (curl: "Stream error in the
/// HTTP/2 framing layer"), and over HTTP/1.1 the connection closes while the client still
/// writes (its write fails with a broken pipe before it reads the answer). So the rest of the
/// body is read and discarded, bounded in bytes, time and number of such reads, while the
/// answer goes out: HTTP/2 then ends the stream with at most RST_STREAM(NO_ERROR) after the
/// response (RFC 9113 section 8.1), and HTTP/1.1 answers `Connection: close` and closes once
/// the body is in (a lingering close).
fn refuse(
    app: &App,
    refusal: Refusal,
    version: axum::http::Version,
    declared: Option<u64>,
) -> Response {
    let mut response = reject(app, refusal.status, refusal.message);
    let Some(mut body) = refusal.unread else {
        return response;
    };
    if version < axum::http::Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if declared.is_some_and(|n| n > DRAIN_BYTES) {
        return response;
    }
    if let Ok(permit) = app.drains.clone().try_acquire_owned() {
        tokio::spawn(async move {
            let _permit = permit;
            let mut read: u64 = 0;
            let deadline = tokio::time::Instant::now() + DRAIN_TIME;
            while read <= DRAIN_BYTES {
                match tokio::time::timeout_at(deadline, body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        read += frame.data_ref().map_or(0, |d| d.len() as u64);
                    }
                    _ => break,
                }
            }
        });
    }
    response
}

/// Whether the connection a request came on presented a verified client certificate.
#[derive(Debug, Clone, Copy)]
struct ClientVerified(bool);

async fn mutate(State(app): State<Arc<App>>, request: Request) -> Response {
    // Taking the parts rather than a HeaderMap extractor, which would clone the headers.
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if app.limits.require_client_cert
        && !parts
            .extensions
            .get::<ClientVerified>()
            .is_some_and(|v| v.0)
    {
        return refuse(
            &app,
            Refusal {
                status: StatusCode::FORBIDDEN,
                message: "a client certificate signed by the --client-ca bundle is required"
                    .to_string(),
                unread: Some(body),
            },
            parts.version,
            declared,
        );
    }
    let headers = &parts.headers;
    if !is_json(headers) {
        return refuse(
            &app,
            Refusal {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: "Content-Type must be application/json (an AdmissionReview v1)"
                    .to_string(),
                unread: Some(body),
            },
            parts.version,
            declared,
        );
    }
    let _in_flight = app.metrics().in_flight();
    // Waiting longer than half of kube-apiserver's timeout for a slot would leave too little
    // for the review itself: past that, the review is answered at once without injecting,
    // rather than timing out (which failurePolicy would turn into the same pod, later, or a
    // refused one).
    let patience = shed_after(parts.uri.query());
    let waited = Instant::now();
    // The semaphore is never closed, so acquire only fails if it were; then serve unbounded.
    let permit = tokio::time::timeout(patience, app.permits.acquire()).await;
    let overloaded = permit.is_err();
    let _permit = permit.ok().and_then(Result::ok);
    let body = match read_body(&app, declared, body).await {
        Ok(b) => b,
        Err(refusal) => return refuse(&app, refusal, parts.version, declared),
    };
    let started = Instant::now();
    let served = app.slot.current();
    let mut ticket = None;
    if !overloaded && let Some(snapshot) = &served {
        match app
            .repeats
            .answer(&body, snapshot, snapshot.view.read(|v| v.changes()))
        {
            Lookup::Miss(t) => ticket = t,
            Lookup::Reused(reused) => {
                if let Some(seen) = app.registries.get()
                    && let Some(decision) = &reused.outcome.decision
                    && !decision.glob_registries.is_empty()
                {
                    seen.seen(&decision.glob_registries);
                }
                let logged = Logged {
                    uid: &reused.uid,
                    outcome: &reused.outcome,
                    warnings: reused.warnings,
                    reused: true,
                };
                return send(&app, reused.body, &logged, started);
            }
        }
    }
    let request = match admission::read(&body) {
        Ok(r) => r,
        Err(e) => return reject(&app, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let snapshot = served.as_deref().unwrap_or(&app.empty);
    let decide = || {
        snapshot.view.read(|view| {
            (
                admission::decide(&snapshot.catalog, view, &request),
                view.changes(),
            )
        })
    };
    let (mut pending, mut changes) = decide();
    if overloaded {
        return answer(&app, pending.render_overloaded(waited.elapsed()), started);
    }
    // An answer is reused only when it follows from the snapshot and the view alone: not
    // after waiting for a namespace (a later review may find it), nor after making copies.
    let mut reusable = true;
    if let Some(namespace) = pending.unknown_namespace() {
        reusable = false;
        if let Some(wait) = app.namespaces.get()
            && wait.wait_for(&namespace).await
        {
            (pending, changes) = decide();
        }
    }
    if let Some(seen) = app.registries.get()
        && let Some(decision) = pending.decision()
        && !decision.glob_registries.is_empty()
    {
        seen.seen(&decision.glob_registries);
    }
    if let Some(copier) = app.copier.get()
        && pending.decision().is_some_and(|d| !d.copies.is_empty())
    {
        reusable = false;
        copier.make(&mut pending).await;
    }
    let rendered = match &served {
        Some(_) => pending.render(),
        None => pending.render_not_ready(&app.slot.not_ready_reason()),
    };
    let reviewed = match rendered {
        Ok(r) => r,
        Err(e) => return reject(&app, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if reusable
        && let Some(snapshot) = &served
        && let Some(ticket) = ticket
    {
        app.repeats
            .remember(ticket, &body, request.uid(), snapshot, changes, &reviewed);
    }
    answer(&app, Ok(reviewed), started)
}

/// What an answer's log line and metrics are made from.
struct Logged<'a> {
    uid: &'a str,
    outcome: &'a admission::Outcome,
    warnings: usize,
    /// Made from a remembered answer ([`admission::repeat`]).
    reused: bool,
}

/// Sends a rendered review, counted and logged.
fn answer(
    app: &App,
    rendered: Result<Reviewed, admission::ReviewError>,
    started: Instant,
) -> Response {
    let reviewed = match rendered {
        Ok(r) => r,
        Err(e) => return reject(app, StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let logged = Logged {
        uid: &reviewed.response.uid,
        outcome: &reviewed.outcome,
        warnings: reviewed.response.warnings.len(),
        reused: false,
    };
    send(app, reviewed.body, &logged, started)
}

/// Sends an answer body, counted and logged.
fn send(app: &App, body: Vec<u8>, logged: &Logged<'_>, started: Instant) -> Response {
    let elapsed = started.elapsed();
    record(app.metrics(), logged, elapsed);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Bytes::from(body),
    )
        .into_response()
}

/// kube-apiserver's webhook timeout when it sends none (`timeoutSeconds` defaults to 10).
const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a review may wait for a slot: half of the `timeout` kube-apiserver appends to the
/// URL (`?timeout=10s`: the mutating dispatcher in k8s.io/apiserver's
/// `pkg/admission/plugin/webhook/mutating/dispatcher.go` calls `r.Timeout(timeoutSeconds)`,
/// which client-go's REST request sends as that query parameter).
fn shed_after(query: Option<&str>) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(|v| humantime::parse_duration(v).ok())
        .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT)
        / 2
}

/// Counts an answered admission and writes its log line.
fn record(metrics: &Metrics, logged: &Logged<'_>, elapsed: Duration) {
    let o = logged.outcome;
    metrics.admission(
        &RequestLabels {
            kind: o.kind_label(),
            operation: o.operation,
            outcome: o.verdict.as_str(),
        },
        Some(elapsed),
    );
    if let Some(decision) = &o.decision {
        for credential in &decision.credentials {
            metrics.injection(credential);
        }
        for w in &decision.warnings {
            metrics.warning(w.reason.as_str());
        }
    }
    let warnings = logged.warnings;
    let reused = logged.reused;
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if let Some(error) = &o.object_error {
        tracing::warn!(
            uid = %logged.uid,
            kind = %o.kind,
            operation = %o.operation,
            namespace = %o.namespace,
            name = %o.name,
            error = %error,
            warnings,
            outcome = %o.verdict.as_str(),
            latency_us,
            "admission: object not readable, nothing injected"
        );
        return;
    }
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let added = || {
        o.decision
            .iter()
            .flat_map(|d| d.add.iter().map(String::as_str))
    };
    let copies = || {
        o.decision
            .iter()
            .flat_map(|d| d.copies.iter().map(|c| c.name()))
    };
    // The Deployment's JSON logging: the same line, written without tracing's formatter.
    let written = crate::telemetry::info_json(module_path!(), "admission", |line| {
        line.str("uid", logged.uid)
            .str("kind", &o.kind)
            .str("operation", o.operation)
            .str("namespace", &o.namespace)
            .str("name", &o.name)
            .joined("injected", added())
            .joined("copies_needed", copies())
            .u64("warnings", warnings as u64)
            .str("outcome", o.verdict.as_str())
            .u64("latency_us", latency_us)
            .bool("reused", reused);
    });
    if !written {
        let injected = added().collect::<Vec<_>>().join(",");
        let copies = copies().collect::<Vec<_>>().join(",");
        tracing::info!(
            uid = %logged.uid,
            kind = %o.kind,
            operation = %o.operation,
            namespace = %o.namespace,
            name = %o.name,
            injected = %injected,
            copies_needed = %copies,
            warnings,
            outcome = %o.verdict.as_str(),
            latency_us,
            reused,
            "admission"
        );
    }
}

/// The HTTP side of one TLS connection: HTTP/2 when ALPN chose it (no preface sniffing),
/// HTTP/1.1 with keep-alive and a header timeout otherwise. Public so that the load benchmark's
/// bare server uses exactly this setup.
pub fn connection_builder(h2: bool, header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    }
}

/// Listening sockets, bound before serving so that callers learn the ports (port 0 in tests).
pub struct Bound {
    admission: TcpListener,
    metrics: TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
}

/// Binds the admission and metrics ports.
pub async fn bind(
    admission: SocketAddr,
    metrics: SocketAddr,
    cert: &Arc<ServingCert>,
    client_ca: Option<&ClientCa>,
    app: Arc<App>,
) -> Result<Bound, HttpError> {
    let tls = cert.server_config(client_ca)?;
    let admission_listener =
        TcpListener::bind(admission)
            .await
            .map_err(|source| HttpError::Bind {
                addr: admission,
                what: "admission",
                source,
            })?;
    let metrics_listener = TcpListener::bind(metrics)
        .await
        .map_err(|source| HttpError::Bind {
            addr: metrics,
            what: "metrics",
            source,
        })?;
    Ok(Bound {
        admission: admission_listener,
        metrics: metrics_listener,
        acceptor: TlsAcceptor::from(tls),
        app,
    })
}

/// Why the HTTP side could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A port could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `admission` or `metrics`.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The metrics server failed.
    #[error("metrics server: {0}")]
    Metrics(#[source] std::io::Error),
}

impl Bound {
    /// The admission (HTTPS) address.
    pub fn admission_addr(&self) -> std::io::Result<SocketAddr> {
        self.admission.local_addr()
    }

    /// The metrics (HTTP) address.
    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// within the grace period, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = self.app.clone();
        let grace = app.limits.shutdown_grace;

        let mut metrics_stop = stop_rx.clone();
        let metrics_server = axum::serve(self.metrics, app.metrics_router())
            .with_graceful_shutdown(async move {
                let _ = metrics_stop.wait_for(|stop| *stop).await;
            });
        let metrics_task = tokio::spawn(async move { metrics_server.await });

        let graceful = GracefulShutdown::new();
        let router = app.router();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.admission.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let router = router.clone();
            let watcher = graceful.watcher();
            let limits = app.limits.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                // rustls verified any certificate presented; none presented is allowed at the
                // TLS layer (probes) and refused for reviews when one is required.
                let verified = ClientVerified(tls.get_ref().1.peer_certificates().is_some());
                let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                    router,
                    move |mut req: axum::http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(verified);
                        req
                    },
                ));
                let builder = connection_builder(h2, limits.header_timeout);
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
            });
        }
        drop(self.admission);
        app.shutting_down.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        tracing::info!(grace = ?grace, "shutting down: no new connections, finishing in-flight requests");
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining connections");
        }
        match tokio::time::timeout(grace, metrics_task).await {
            Ok(Ok(Err(e))) => Err(HttpError::Metrics(e)),
            _ => Ok(()),
        }
    }
}
