//! A client connection.
//!
//! The reader decodes frames and starts one task per request, so pipelined requests are handled
//! concurrently; the writer awaits those tasks in arrival order, so responses leave in request
//! order as Kafka requires. At most [`MAX_INFLIGHT_PER_CONNECTION`] requests are in flight; the
//! reader stops reading while the window is full (TCP backpressure to the client).
//!
//! The first four bytes tell HTTP from Kafka: a Kafka frame starts with a size far below
//! `"GET "` read as a big-endian integer (1.2 GB), so `/metrics` can be curled on the Kafka port
//! as the deployment guide does.
//!
//! With `server.kafka_tls_enabled` the listener is TLS only: the handshake comes first, no HTTP
//! is served, and with mutual TLS the client certificate names the principal.
//!
//! With `server.sasl_mechanisms` set, a connection must authenticate (SaslHandshake, then
//! SaslAuthenticate, or raw tokens after a version-0 handshake) before any request other than
//! ApiVersions; anything else first closes it, as Kafka's SASL listeners do. Both SASL APIs are
//! answered here, in order with the connection's other responses.
//!
//! What handlers keep between requests of one connection ([`ConnState`]: its fetch sessions)
//! lives as long as the connection.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use chronik_protocol::frame::{self, RequestHead};
use chronik_protocol::ProtocolError;
use futures::future::poll_immediate;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use crate::broker::Broker;
use crate::handlers::{ConnState, Outcome};
use crate::sasl::{Authenticator, Mechanism};

/// Requests of one connection being handled at once.
pub const MAX_INFLIGHT_PER_CONNECTION: usize = 64;
/// Read buffer of a Kafka connection.
const READ_BUFFER_BYTES: usize = 16 * 1024;

const HTTP_PREFIXES: [&[u8; 4]; 6] = [b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI"];

/// Serves one accepted connection until the client closes it or sends garbage.
pub async fn serve(broker: Rc<Broker>, stream: TcpStream) {
    let _guard = ConnectionGuard::new(&broker);
    let _ = stream.set_nodelay(true);
    // A connection that sends nothing for connections_max_idle_ms is closed (reads time out).
    let idle = broker.shared.config.server.connections_max_idle_ms;
    if idle > 0 {
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(idle)));
    }
    let peer_addr = stream.peer_addr().ok();
    let peer = peer_addr.map(|a| a.to_string()).unwrap_or_default();
    // An address over its connection_creation_rate: held for the throttle time, then closed
    // unread (KIP-612).
    if let Some(ip) = peer_addr
        .filter(|_| broker.shared.has_quotas())
        .map(|a| a.ip().to_string())
    {
        let meta = broker.meta();
        if !meta.quotas.is_empty() {
            let now = crate::partition::now_ms();
            let ms = broker.shared.quotas.connection_throttle(&meta, &ip, now);
            if ms > 0 {
                tracing::debug!(%peer, ms, "connection_creation_rate exceeded; closing");
                glommio::timer::sleep(std::time::Duration::from_millis(ms as u64)).await;
                return;
            }
        }
    }
    let mut prefix = [0u8; 4];
    if let Some(acceptor) = broker.shared.kafka_tls.clone() {
        // SSL / SASL_SSL listener: the handshake first, then Kafka frames inside TLS.
        let tls = match acceptor.accept(stream).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
        };
        // mTLS: the client certificate names the principal (SASL, if any, replaces it).
        let principal = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| crate::tls::principal_of(leaf));
        let (mut reader, writer) = tls.split();
        if reader.read_exact(&mut prefix).await.is_err() {
            return;
        }
        return serve_kafka(broker, reader, writer, prefix, peer, principal).await;
    }
    let (mut reader, writer) = stream.split();
    if reader.read_exact(&mut prefix).await.is_err() {
        return;
    }
    // Not on a SASL listener: the HTTP admin routes would bypass authentication.
    let server = &broker.shared.config.server;
    let http_here = server.http_on_kafka_port && server.sasl_mechanisms.trim().is_empty();
    if http_here && HTTP_PREFIXES.iter().any(|p| **p == prefix) {
        let stream = reader.reunite(writer).expect("halves of one stream");
        crate::http::serve(broker, stream, &prefix).await;
        return;
    }
    serve_kafka(broker, reader, writer, prefix, peer, None).await
}

/// The Kafka protocol on one connection whose first four bytes (`prefix`) were read;
/// `principal` is the client certificate's (mTLS).
async fn serve_kafka<R, W>(
    broker: Rc<Broker>,
    reader: R,
    writer: W,
    mut prefix: [u8; 4],
    peer: String,
    principal: Option<String>,
) where
    R: futures::io::AsyncRead + Unpin,
    W: futures::io::AsyncWrite + Unpin + 'static,
{
    let (tx, rx) = local_channel::new_bounded::<JoinHandle<Outcome>>(MAX_INFLIGHT_PER_CONNECTION);
    let writer_task = glommio::spawn_local(async move {
        let mut w = futures::io::BufWriter::with_capacity(64 * 1024, writer);
        // Responses are buffered while more are ready at once, and flushed before the writer
        // waits for anything: a pipelining client never waits on a response sitting in a buffer.
        loop {
            let mut task = match poll_immediate(rx.recv()).await {
                Some(Some(t)) => t,
                Some(None) => break,
                None => {
                    if w.flush().await.is_err() {
                        return;
                    }
                    match rx.recv().await {
                        Some(t) => t,
                        None => break,
                    }
                }
            };
            let response = match poll_immediate(&mut task).await {
                Some(r) => r,
                None => {
                    if w.flush().await.is_err() {
                        return;
                    }
                    task.await
                }
            };
            match response {
                Some(Outcome::Respond(bytes)) => {
                    if w.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                // Parts at least as large as the buffer bypass it (no copy); small ones are
                // gathered into it.
                Some(Outcome::RespondParts(parts)) => {
                    for part in parts {
                        if w.write_all(&part).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Outcome::Silent) => {}
                // Close: shut the connection with whatever is unanswered (fault injection);
                // the client sees EOF at once and retries on a new connection.
                Some(Outcome::Close) => {
                    let _ = w.close().await;
                    return;
                }
                None => return,
            }
        }
        let _ = w.flush().await;
    });
    // Frames are read through a buffer: one recv usually brings a request's size prefix, its
    // body and the next prefixes of pipelined requests, instead of one recv for each (a body
    // larger than the buffer is read into its own allocation directly).
    let mut reader = futures::io::BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let max = broker.shared.config.server.socket_request_max_bytes as usize;
    let state = Rc::new(ConnState::new(&broker, &peer));
    if let Some(p) = principal {
        state.set_principal(p);
    }
    let mut sasl = Sasl::new(&broker);
    let mut last_quota_bound: Option<futures::channel::oneshot::Receiver<()>> = None;
    loop {
        let len = match frame::frame_len(prefix, max) {
            Ok(len) => len,
            Err(e) => {
                tracing::debug!(%peer, "closing connection: {e}");
                break;
            }
        };
        let mut buf = BytesMut::zeroed(len);
        if reader.read_exact(&mut buf).await.is_err() {
            break;
        }
        let frame = buf.freeze();
        // A client under a byte-rate quota has its produce/fetch requests handled one at a time,
        // as Kafka handles every connection, so a throttle takes effect before the next one;
        // without quotas requests pipeline freely.
        let quota_bound = broker.shared.has_quotas()
            && crate::quotas::applies_to_frame(&broker.meta(), &state.principal(), &frame);
        if quota_bound {
            if let Some(done) = last_quota_bound.take() {
                let _ = done.await;
            }
        }
        // A client over its quota gets no request served until its throttle time has passed
        // (KIP-219 mutes the channel; a request already read waits the same way).
        let muted = state.muted_for_ms(crate::partition::now_ms());
        if muted > 0 {
            glommio::timer::sleep(std::time::Duration::from_millis(muted as u64)).await;
        }
        let done = quota_bound.then(|| {
            let (tx, rx) = futures::channel::oneshot::channel();
            last_quota_bound = Some(rx);
            tx
        });
        let (task, close) = match sasl.gate(&broker, &frame) {
            Gate::Pass => match request_task(&broker, frame, &peer, &state, done) {
                Some(t) => (t, false),
                None => break,
            },
            // A refused exchange is answered after Kafka's
            // connection.failed.authentication.delay.ms (100 ms), which slows password guessing.
            Gate::Answer(bytes, true) => (delayed(bytes, FAILED_AUTH_DELAY), true),
            Gate::Answer(bytes, false) => {
                if let Some(user) = sasl.user.as_deref() {
                    state.authenticated(user);
                }
                (ready(bytes), false)
            }
            Gate::Close(why) => {
                tracing::debug!(%peer, "closing connection: {why}");
                break;
            }
        };
        if tx.send(task).await.is_err() || close {
            break;
        }
        if reader.read_exact(&mut prefix).await.is_err() {
            break;
        }
    }
    drop(tx);
    writer_task.await;
}

/// Starts handling one request; `None` means close the connection (malformed input).
/// `done` is signalled once the request is handled.
fn request_task(
    broker: &Rc<Broker>,
    frame: Bytes,
    peer: &str,
    state: &Rc<ConnState>,
    done: Option<futures::channel::oneshot::Sender<()>>,
) -> Option<JoinHandle<Outcome>> {
    let head = match frame::request_head(&frame) {
        Ok(h) => h,
        Err(_) => return None,
    };
    match frame::decode_request(frame) {
        Ok(req) => {
            let broker = broker.clone();
            let peer = peer.to_string();
            let state = state.clone();
            let started = std::time::Instant::now();
            Some(
                glommio::spawn_local(async move {
                    // With quotas configured, the thread time of the request is measured for
                    // the request quota (request_percentage).
                    let clock = broker
                        .shared
                        .has_quotas()
                        .then(|| Rc::new(crate::quotas::RequestClock::default()));
                    let fut = crate::handlers::dispatch(broker, req, &peer, &state, clock.clone());
                    let out = match clock {
                        Some(clock) => crate::quotas::timed(clock, fut).await,
                        None => fut.await,
                    };
                    if let Some(h) = request_histogram(head.api_key) {
                        h.record(started.elapsed().as_secs_f64());
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    out
                })
                .detach(),
            )
        }
        Err(ProtocolError::UnknownApiKey { .. } | ProtocolError::UnsupportedVersion { .. }) => {
            Some(ready(unsupported(head)))
        }
        Err(e) => {
            tracing::debug!(%peer, api_key = head.api_key, "closing connection: {e}");
            None
        }
    }
}

/// Name of the per-API histogram of request handling time: from the decoded frame to the
/// response ready to send (Kafka's `TotalTimeMs` less the network queueing), in seconds.
pub const REQUEST_SECONDS: &str = "chronik_request_seconds";

/// The request-time histogram of an API key served by this broker, registered once per process
/// (after the metrics recorder is installed; handles are lock-free to record into).
fn request_histogram(api_key: i16) -> Option<&'static metrics::Histogram> {
    static HISTOGRAMS: std::sync::OnceLock<Vec<Option<metrics::Histogram>>> =
        std::sync::OnceLock::new();
    let all = HISTOGRAMS.get_or_init(|| {
        let top = chronik_protocol::api::SUPPORTED
            .iter()
            .map(|(k, _, _)| *k as i16)
            .max()
            .unwrap_or(0);
        (0..=top)
            .map(|key| {
                let key = kafka_protocol::messages::ApiKey::try_from(key).ok()?;
                chronik_protocol::api::supported(key)?;
                let name = chronik_protocol::api::name(key);
                Some(metrics::histogram!(REQUEST_SECONDS, "api" => name))
            })
            .collect()
    });
    all.get(usize::try_from(api_key).ok()?)?.as_ref()
}

fn unsupported(head: RequestHead) -> Bytes {
    let mut out = BytesMut::new();
    frame::encode_unsupported(&mut out, head);
    out.freeze()
}

/// How long a failed SASL exchange waits before its answer and the close.
const FAILED_AUTH_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

fn delayed(bytes: Bytes, delay: std::time::Duration) -> JoinHandle<Outcome> {
    glommio::spawn_local(async move {
        glommio::timer::sleep(delay).await;
        Outcome::Respond(bytes)
    })
    .detach()
}

fn ready(bytes: Bytes) -> JoinHandle<Outcome> {
    glommio::spawn_local(async move { Outcome::Respond(bytes) }).detach()
}

/// Counts an open connection for `server.max_connections`.
struct ConnectionGuard(std::sync::Arc<crate::shared::Shared>);

impl ConnectionGuard {
    fn new(broker: &Rc<Broker>) -> Self {
        broker
            .shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(broker.shared.clone())
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// What the SASL gate does with one frame.
enum Gate {
    /// Not a SASL matter: handle it as a request.
    Pass,
    /// Answer with this frame; `true`: then close the connection.
    Answer(Bytes, bool),
    /// Close without answering.
    Close(&'static str),
}

/// The SASL state of one connection.
struct Sasl {
    /// Mechanisms the listener requires; empty: PLAINTEXT, no authentication.
    enabled: Vec<Mechanism>,
    /// The exchange under way (after a handshake).
    auth: Option<Authenticator>,
    /// A version-0 handshake: tokens come as bare size-prefixed frames.
    raw: bool,
    /// The authenticated user.
    user: Option<String>,
}

impl Sasl {
    fn new(broker: &Broker) -> Self {
        let enabled =
            Mechanism::parse_list(&broker.shared.config.server.sasl_mechanisms).unwrap_or_default();
        Sasl {
            enabled,
            auth: None,
            raw: false,
            user: None,
        }
    }

    fn gate(&mut self, broker: &Broker, frame: &Bytes) -> Gate {
        use kafka_protocol::messages::{
            ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
        };
        use kafka_protocol::ResponseError;
        if self.raw {
            // Version-0 handshake: this frame is a bare token, answered by a bare token.
            let Some(auth) = self.auth.as_mut() else {
                return Gate::Close("raw SASL token without an exchange");
            };
            return match auth.step(frame, &broker.meta()) {
                Ok(step) => {
                    if let Some(user) = step.user {
                        tracing::debug!(user, "SASL authenticated");
                        self.user = Some(user);
                        self.auth = None;
                        self.raw = false;
                    }
                    let mut out = BytesMut::with_capacity(4 + step.token.len());
                    out.extend_from_slice(&(step.token.len() as i32).to_be_bytes());
                    out.extend_from_slice(&step.token);
                    Gate::Answer(out.freeze(), false)
                }
                Err(_) => Gate::Close("SASL authentication failed"),
            };
        }
        let Ok(head) = frame::request_head(frame) else {
            return Gate::Pass;
        };
        let required = !self.enabled.is_empty();
        let authenticated = self.user.is_some();
        let key = ApiKey::try_from(head.api_key).ok();
        match key {
            Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => {}
            Some(ApiKey::ApiVersions) => return Gate::Pass,
            _ if required && !authenticated => {
                return Gate::Close("request before SASL authentication")
            }
            _ => return Gate::Pass,
        }
        let Ok(req) = frame::decode_request(frame.clone()) else {
            // Unsupported versions and malformed frames take the usual way.
            return Gate::Pass;
        };
        let names = || {
            self.enabled
                .iter()
                .map(|m| crate::handlers::str_bytes(m.name()))
                .collect::<Vec<_>>()
        };
        // Kafka answers both APIs ILLEGAL_SASL_STATE outside an exchange (on a PLAINTEXT
        // listener, or after authentication) and closes a SASL connection that errs.
        let illegal = ResponseError::IllegalSaslState.code();
        let (body, close) = match req.body {
            RequestKind::SaslHandshake(r) => {
                let resp = SaslHandshakeResponse::default().with_mechanisms(names());
                let wanted =
                    Mechanism::parse(r.mechanism.as_str()).filter(|m| self.enabled.contains(m));
                let (resp, close) = if !required || authenticated || self.auth.is_some() {
                    (resp.with_error_code(illegal), required)
                } else if let Some(m) = wanted {
                    self.auth = Some(Authenticator::new(m));
                    self.raw = req.version == 0;
                    (resp, false)
                } else {
                    let code = ResponseError::UnsupportedSaslMechanism.code();
                    (resp.with_error_code(code), true)
                };
                (ResponseKind::SaslHandshake(resp), close)
            }
            RequestKind::SaslAuthenticate(r) => {
                let resp = SaslAuthenticateResponse::default();
                let (resp, close) = match self.auth.as_mut() {
                    Some(auth) if required && !authenticated => {
                        match auth.step(&r.auth_bytes, &broker.meta()) {
                            Ok(step) => {
                                if let Some(user) = step.user {
                                    tracing::debug!(user, "SASL authenticated");
                                    self.user = Some(user);
                                    self.auth = None;
                                }
                                (resp.with_auth_bytes(Bytes::from(step.token)), false)
                            }
                            Err(msg) => {
                                tracing::info!(
                                    mechanism = auth.mechanism().name(),
                                    "SASL authentication failed: {msg}"
                                );
                                (
                                    resp.with_error_code(
                                        ResponseError::SaslAuthenticationFailed.code(),
                                    )
                                    .with_error_message(Some(crate::handlers::str_bytes(msg))),
                                    true,
                                )
                            }
                        }
                    }
                    _ => (resp.with_error_code(illegal), required),
                };
                (ResponseKind::SaslAuthenticate(resp), close)
            }
            _ => return Gate::Pass,
        };
        let mut out = BytesMut::with_capacity(128);
        match frame::encode_response(
            &mut out,
            head.correlation_id,
            req.api_key,
            req.version,
            &body,
        ) {
            Ok(()) => Gate::Answer(out.freeze(), close),
            Err(_) => Gate::Close("encoding a SASL response failed"),
        }
    }
}
