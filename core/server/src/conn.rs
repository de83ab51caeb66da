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

/// Requests of one connection being handled at once.
pub const MAX_INFLIGHT_PER_CONNECTION: usize = 64;

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
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut prefix = [0u8; 4];
    let (mut reader, writer) = stream.split();
    if reader.read_exact(&mut prefix).await.is_err() {
        return;
    }
    if broker.shared.config.server.http_on_kafka_port && HTTP_PREFIXES.iter().any(|p| **p == prefix)
    {
        let stream = reader.reunite(writer).expect("halves of one stream");
        crate::http::serve(broker, stream, &prefix).await;
        return;
    }
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
    let max = broker.shared.config.server.socket_request_max_bytes as usize;
    let state = Rc::new(ConnState::new(&broker));
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
        let task = match request_task(&broker, frame, &peer, &state) {
            Some(t) => t,
            None => break,
        };
        if tx.send(task).await.is_err() {
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
fn request_task(
    broker: &Rc<Broker>,
    frame: Bytes,
    peer: &str,
    state: &Rc<ConnState>,
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
                    let out = crate::handlers::dispatch(broker, req, &peer, &state).await;
                    if let Some(h) = request_histogram(head.api_key) {
                        h.record(started.elapsed().as_secs_f64());
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
