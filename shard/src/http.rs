//! A small, bounded HTTP/1.1 server for `/metrics`, health probes and the
//! admin / cluster API, run on a glommio `TcpStream` (or any
//! `AsyncRead + AsyncWrite`).
//!
//! The broker answers HTTP on its dedicated HTTP port and on the Kafka port:
//! the Kafka listener reads the first 4 bytes, and [`looks_like_http`] tells
//! whether they start an HTTP request; those bytes are then passed as
//! `prefix` to [`serve_connection`]. Routing belongs to the caller's
//! [`HttpHandler`]; this module owns parsing, limits, keep-alive, timeouts
//! and response framing.
//!
//! Bounds (every loop and buffer): request head <= [`HEAD_BYTES_MAX`], at most
//! [`HEADERS_MAX`] headers, body <= [`BODY_BYTES_MAX`] (Content-Length only;
//! chunked request bodies get 411), at most [`REQUESTS_PER_CONNECTION_MAX`]
//! requests per connection, and a deadline on every read and write.
//! Malformed input gets a 4xx/5xx response and the connection is closed; it
//! never panics.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request line + headers, in bytes.
pub const HEAD_BYTES_MAX: usize = 16 << 10;
/// Most header lines in one request.
pub const HEADERS_MAX: usize = 64;
/// Largest request body (admin API payloads are small JSON documents).
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Requests served on one connection before it is closed.
pub const REQUESTS_PER_CONNECTION_MAX: u32 = 10_000;
/// Bytes read from the socket per read call.
const READ_CHUNK_BYTES: usize = 8 << 10;
/// Longest method name accepted.
const METHOD_BYTES_MAX: usize = 16;

/// Limits and deadlines of one connection. `Default` holds the production
/// values; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request head.
    pub head_bytes_max: usize,
    /// Largest request body.
    pub body_bytes_max: usize,
    /// Whole request head must arrive within this (slow-loris bound).
    pub head_timeout: Duration,
    /// Whole body must arrive within this after the head.
    pub body_timeout: Duration,
    /// Close a keep-alive connection idle this long between requests.
    pub idle_timeout: Duration,
    /// A response write must finish within this.
    pub write_timeout: Duration,
    /// Requests per connection.
    pub requests_per_connection_max: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            head_bytes_max: HEAD_BYTES_MAX,
            body_bytes_max: BODY_BYTES_MAX,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            requests_per_connection_max: REQUESTS_PER_CONNECTION_MAX,
        }
    }
}

/// Whether the first bytes of a connection start an HTTP request.
///
/// Why this cannot mistake a Kafka request: a Kafka frame starts with a
/// big-endian i32 size, and `"GET "` read that way is 0x47455420 =
/// 1_195_725_856 bytes, far above any accepted frame size; the same holds for
/// every method prefix below (all start with an ASCII capital, >= 0x41 =
/// 1.09e9 bytes).
pub fn looks_like_http(first: &[u8]) -> bool {
    const PREFIXES: &[&[u8; 4]] = &[
        b"GET ", b"POST", b"PUT ", b"DELE", b"HEAD", b"OPTI", b"PATC",
    ];
    first.len() >= 4 && PREFIXES.iter().any(|p| &first[..4] == *p)
}

/// A parsed request as handed to [`HttpHandler::handle_request`].
#[derive(Debug)]
pub struct HttpRequest<'a> {
    /// Upper-case method; `HEAD` requests arrive as `GET` (the body is
    /// dropped when writing).
    pub method: &'a str,
    /// Path without the query string, e.g. `/api/v1/cluster/status`.
    pub path: &'a str,
    /// Query string without `?` (empty if none), e.g. `consistent=true`.
    pub query: &'a str,
    /// Headers in arrival order; names lower-cased.
    pub headers: &'a [(String, String)],
    /// The body (Content-Length bytes).
    pub body: &'a [u8],
}

impl HttpRequest<'_> {
    /// First header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: String,
    /// Extra headers. Names/values containing CR or LF are dropped when
    /// writing (no header injection).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with a body of the given type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        HttpResponse {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body: body.into(),
        }
    }
    /// `text/plain; charset=utf-8`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }
    /// `application/json`.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "application/json", body.into())
    }
    /// Prometheus text exposition format, status 200.
    pub fn prometheus(body: impl Into<String>) -> Self {
        Self::new(200, "text/plain; version=0.0.4; charset=utf-8", body.into())
    }
    /// 404 with a short text body.
    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }
    /// 405 with an `Allow` header.
    pub fn method_not_allowed(allow: &str) -> Self {
        Self::text(405, "method not allowed\n").with_header("Allow", allow)
    }
    /// Add a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// The caller's routes. Keep it synchronous and quick: it runs on the shard.
pub trait HttpHandler {
    /// Answer `method` on `path` (no query string) with `body`.
    fn handle(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse;

    /// Full request (query, headers); defaults to [`HttpHandler::handle`].
    fn handle_request(&self, req: &HttpRequest<'_>) -> HttpResponse {
        self.handle(req.method, req.path, req.body)
    }
}

impl<F> HttpHandler for F
where
    F: Fn(&str, &str, &[u8]) -> HttpResponse,
{
    fn handle(&self, method: &str, path: &str, body: &[u8]) -> HttpResponse {
        self(method, path, body)
    }
}

/// A request head that cannot be served, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 4xx/5xx status.
    pub status: u16,
    /// Short reason for the body.
    pub reason: String,
}

impl Reject {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Reject {
            status,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Upper-case method as sent.
    pub method: String,
    /// Path (origin form, query removed).
    pub path: String,
    /// Query string without `?`.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body length.
    pub content_length: usize,
    /// Whether the client wants the connection kept open.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
}

/// Index just past the blank line ending the head, if present, scanning
/// from `from` (bytes before it were already scanned and held no end).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    // Back up 2 bytes: a terminator may straddle the previous scan's end.
    let mut i = from.saturating_sub(2);
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parse a request head from the start of `buf`. `Ok(None)` means more
/// bytes are needed; `Ok(Some((head, len)))` consumed `len` bytes.
pub fn parse_head(buf: &[u8], limits: &HttpLimits) -> Result<Option<(RequestHead, usize)>, Reject> {
    parse_head_from(buf, limits, 0)
}

/// [`parse_head`] that skips re-scanning the first `scanned` bytes for the
/// end of the head, so a head arriving a byte at a time costs O(n), not
/// O(n²).
fn parse_head_from(
    buf: &[u8],
    limits: &HttpLimits,
    scanned: usize,
) -> Result<Option<(RequestHead, usize)>, Reject> {
    let Some(end) = head_end(buf, scanned) else {
        if buf.len() >= limits.head_bytes_max {
            return Err(Reject::new(431, "request head too large"));
        }
        // A request must start with a method: reject garbage early instead
        // of waiting for a blank line that may never come.
        // Only the first METHOD_BYTES_MAX + 1 bytes matter, so this stays
        // O(1) however large the buffer.
        let first_line = &buf[..buf.len().min(METHOD_BYTES_MAX + 1)];
        let method_len = first_line
            .iter()
            .take_while(|b| !matches!(**b, b' ' | b'\r' | b'\n'))
            .count();
        if method_len > METHOD_BYTES_MAX
            || first_line[..method_len]
                .iter()
                .any(|b| !b.is_ascii_uppercase())
        {
            return Err(Reject::new(400, "malformed request line"));
        }
        return Ok(None);
    };
    if end > limits.head_bytes_max {
        return Err(Reject::new(431, "request head too large"));
    }
    let text = std::str::from_utf8(&buf[..end])
        .map_err(|_| Reject::new(400, "request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reject::new(400, "malformed request line"));
    };
    if method.is_empty()
        || method.len() > METHOD_BYTES_MAX
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(Reject::new(400, "malformed method"));
    }
    let minor_version = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => {
            return Err(Reject::new(
                505,
                "only HTTP versions 1.0 and 1.1 are supported",
            ))
        }
        _ => return Err(Reject::new(400, "malformed HTTP version")),
    };
    // Origin form `/path?query`; absolute form `http://host/path` is reduced
    // to its path; `*` only for OPTIONS.
    let origin = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
    } else {
        target
    };
    if !(origin.starts_with('/') || (origin == "*" && method == "OPTIONS"))
        || origin.bytes().any(|b| b <= b' ' || b == 0x7f)
    {
        return Err(Reject::new(400, "malformed request target"));
    }
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));

    let mut headers = Vec::new();
    let mut content_length: Option<usize> = None;
    let mut keep_alive = minor_version == 1;
    let mut expect_continue = false;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() >= HEADERS_MAX {
            return Err(Reject::new(431, "too many headers"));
        }
        if line.starts_with([' ', '\t']) {
            return Err(Reject::new(400, "folded header lines are not allowed"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Reject::new(400, "malformed header line"))?;
        if !is_token(name) {
            return Err(Reject::new(400, "malformed header name"));
        }
        let name = name.to_ascii_lowercase();
        let value = value.trim_matches([' ', '\t']).to_string();
        match name.as_str() {
            "content-length" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Reject::new(400, "malformed Content-Length"));
                }
                // Saturate so a 40-digit length is "too large", not an error.
                let n = value.parse::<usize>().unwrap_or(usize::MAX);
                if content_length.is_some_and(|c| c != n) {
                    return Err(Reject::new(400, "conflicting Content-Length headers"));
                }
                content_length = Some(n);
            }
            "transfer-encoding" => {
                return Err(Reject::new(
                    411,
                    "chunked request bodies are not supported; send Content-Length",
                ))
            }
            "connection" => {
                for token in value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                    match token.as_str() {
                        "close" => keep_alive = false,
                        "keep-alive" => keep_alive = true,
                        _ => {}
                    }
                }
            }
            "expect" => {
                if value.eq_ignore_ascii_case("100-continue") {
                    expect_continue = true;
                } else {
                    return Err(Reject::new(417, "unsupported Expect"));
                }
            }
            _ => {}
        }
        headers.push((name, value));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > limits.body_bytes_max {
        return Err(Reject::new(
            413,
            format!("body larger than {} bytes", limits.body_bytes_max),
        ));
    }
    Ok(Some((
        RequestHead {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            minor_version,
            headers,
            content_length,
            keep_alive,
            expect_continue,
        },
        end,
    )))
}

/// Standard reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

fn header_safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Serialize a response. `head_only` omits the body (HEAD) but keeps its
/// Content-Length.
pub fn encode_response(resp: &HttpResponse, keep_alive: bool, head_only: bool) -> Vec<u8> {
    let status = if (100..=999).contains(&resp.status) {
        resp.status
    } else {
        500
    };
    let mut out = Vec::with_capacity(256 + if head_only { 0 } else { resp.body.len() });
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    if header_safe(&resp.content_type) && !resp.content_type.is_empty() {
        out.extend_from_slice(format!("Content-Type: {}\r\n", resp.content_type).as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", resp.body.len()).as_bytes());
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n".as_slice()
    } else {
        b"Connection: close\r\n".as_slice()
    });
    for (name, value) in &resp.headers {
        let reserved = name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("transfer-encoding");
        if is_token(name) && header_safe(value) && !reserved {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    out
}

/// Why a read ended without data.
enum ReadOutcome {
    Data(usize),
    Eof,
    TimedOut,
}

async fn read_before<S: AsyncRead + Unpin>(
    stream: &mut S,
    chunk: &mut [u8],
    deadline: Instant,
) -> io::Result<ReadOutcome> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Ok(ReadOutcome::TimedOut);
    }
    let read = async {
        match stream.read(chunk).await {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => Ok(ReadOutcome::Data(n)),
            Err(e) => Err(e),
        }
    };
    let timer = async {
        glommio::timer::Timer::new(left).await;
        Ok(ReadOutcome::TimedOut)
    };
    futures_lite::future::or(read, timer).await
}

async fn write_within<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    let timer = async {
        glommio::timer::Timer::new(limit).await;
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP response write timed out",
        ))
    };
    futures_lite::future::or(write, timer).await
}

async fn reject<S: AsyncWrite + Unpin>(
    stream: &mut S,
    r: &Reject,
    limits: &HttpLimits,
) -> io::Result<()> {
    let resp = HttpResponse::text(r.status, format!("{}\n", r.reason));
    write_within(
        stream,
        &encode_response(&resp, false, false),
        limits.write_timeout,
    )
    .await
}

/// Serve HTTP/1.1 requests on `stream` until the client closes, asks to
/// close, idles out, sends something invalid, or the per-connection request
/// bound is reached. `prefix` holds bytes already read from the stream (the
/// Kafka listener's sniffed bytes), treated as the start of the first request.
/// Returns Ok on every orderly end (including rejected requests, which get
/// their 4xx/5xx response first) and Err only on I/O errors.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    prefix: &[u8],
    handler: &dyn HttpHandler,
) -> io::Result<()> {
    serve_connection_with(stream, prefix, handler, &HttpLimits::default()).await
}

/// [`serve_connection`] with explicit limits.
pub async fn serve_connection_with<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    prefix: &[u8],
    handler: &dyn HttpHandler,
    limits: &HttpLimits,
) -> io::Result<()> {
    let mut stream = stream;
    let stream = &mut stream;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES.max(prefix.len()));
    buf.extend_from_slice(prefix);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut served: u32 = 0;
    while served < limits.requests_per_connection_max {
        // Head: idle deadline until the first byte, then the head deadline.
        let mut deadline = Instant::now()
            + if buf.is_empty() {
                limits.idle_timeout
            } else {
                limits.head_timeout
            };
        let mut scanned = 0;
        let (head, head_len) = loop {
            if scanned == 0 {
                // RFC 9112 §2.2: ignore empty lines before a request line.
                let blank = buf
                    .iter()
                    .take_while(|b| matches!(**b, b'\r' | b'\n'))
                    .count();
                buf.drain(..blank);
            }
            match parse_head_from(&buf, limits, scanned) {
                Ok(Some(h)) => break h,
                Ok(None) => scanned = buf.len(),
                Err(r) => return reject(stream, &r, limits).await,
            }
            let was_empty = buf.is_empty();
            match read_before(stream, &mut chunk, deadline).await? {
                ReadOutcome::Data(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if was_empty {
                        deadline = Instant::now() + limits.head_timeout;
                    }
                }
                // A client that leaves mid-request gets no answer.
                ReadOutcome::Eof => return Ok(()),
                ReadOutcome::TimedOut if was_empty => return Ok(()),
                ReadOutcome::TimedOut => {
                    let r = Reject::new(408, "request head not received in time");
                    return reject(stream, &r, limits).await;
                }
            }
        };
        buf.drain(..head_len);

        // Body.
        let need = head.content_length;
        if head.expect_continue && need > buf.len() {
            write_within(
                stream,
                b"HTTP/1.1 100 Continue\r\n\r\n",
                limits.write_timeout,
            )
            .await?;
        }
        let deadline = Instant::now() + limits.body_timeout;
        while buf.len() < need {
            let want = (need - buf.len()).min(chunk.len());
            match read_before(stream, &mut chunk[..want], deadline).await? {
                ReadOutcome::Data(n) => buf.extend_from_slice(&chunk[..n]),
                ReadOutcome::Eof => return Ok(()),
                ReadOutcome::TimedOut => {
                    let r = Reject::new(408, "request body not received in time");
                    return reject(stream, &r, limits).await;
                }
            }
        }
        let body: Vec<u8> = buf.drain(..need).collect();

        let head_only = head.method == "HEAD";
        let req = HttpRequest {
            method: if head_only { "GET" } else { &head.method },
            path: &head.path,
            query: &head.query,
            headers: &head.headers,
            body: &body,
        };
        let resp = handler.handle_request(&req);
        served += 1;
        let keep = head.keep_alive && served < limits.requests_per_connection_max;
        write_within(
            stream,
            &encode_response(&resp, keep, head_only),
            limits.write_timeout,
        )
        .await?;
        if !keep {
            break;
        }
    }
    let _ = stream.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll};

    /// In-memory stream: serves scripted input chunks, records output. An
    /// empty chunk means "pause for [`PAUSE`]". When the chunks run out it
    /// reports EOF, or stalls forever if `stall`.
    struct Mock {
        input: VecDeque<Vec<u8>>,
        output: Rc<RefCell<Vec<u8>>>,
        stall: bool,
        pause: Option<glommio::timer::Timer>,
    }

    const PAUSE: Duration = Duration::from_millis(15);

    impl Mock {
        fn new(chunks: &[&[u8]], stall: bool) -> (Mock, Rc<RefCell<Vec<u8>>>) {
            let out = Rc::new(RefCell::new(Vec::new()));
            (
                Mock {
                    input: chunks.iter().map(|c| c.to_vec()).collect(),
                    output: out.clone(),
                    stall,
                    pause: None,
                },
                out,
            )
        }
    }

    impl AsyncRead for Mock {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            while self.input.front().is_some_and(|c| c.is_empty()) {
                let timer = self
                    .pause
                    .get_or_insert_with(|| glommio::timer::Timer::new(PAUSE));
                if Pin::new(timer).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.pause = None;
                self.input.pop_front();
            }
            match self.input.pop_front() {
                Some(mut c) => {
                    let n = c.len().min(buf.len());
                    buf[..n].copy_from_slice(&c[..n]);
                    if n < c.len() {
                        self.input.push_front(c.split_off(n));
                    }
                    Poll::Ready(Ok(n))
                }
                // Never woken: only the timer can end the wait.
                None if self.stall => Poll::Pending,
                None => Poll::Ready(Ok(0)),
            }
        }
    }

    impl AsyncWrite for Mock {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.output.borrow_mut().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(64 << 10)
            .make()
            .expect("glommio executor")
            .run(f)
    }

    fn echo(method: &str, path: &str, body: &[u8]) -> HttpResponse {
        match path {
            "/metrics" => HttpResponse::prometheus("chronik_up 1\n"),
            "/echo" => HttpResponse::text(
                200,
                format!("{method} {} {}", body.len(), String::from_utf8_lossy(body)),
            ),
            _ => HttpResponse::not_found(),
        }
    }

    fn short_limits() -> HttpLimits {
        HttpLimits {
            head_timeout: Duration::from_millis(50),
            body_timeout: Duration::from_millis(50),
            idle_timeout: Duration::from_millis(50),
            write_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        }
    }

    /// Serve scripted chunks; return everything written.
    fn exchange(prefix: &[u8], chunks: &[&[u8]], stall: bool, limits: HttpLimits) -> String {
        exchange_with(prefix, chunks, stall, limits, &echo)
    }

    fn exchange_with(
        prefix: &[u8],
        chunks: &[&[u8]],
        stall: bool,
        limits: HttpLimits,
        handler: &dyn HttpHandler,
    ) -> String {
        let (mock, out) = Mock::new(chunks, stall);
        run(async { serve_connection_with(mock, prefix, handler, &limits).await }).unwrap();
        let bytes = out.borrow().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn statuses(out: &str) -> Vec<&str> {
        out.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect()
    }

    #[test]
    fn sniffing() {
        for p in [
            &b"GET /metrics"[..],
            b"POST",
            b"PUT /",
            b"DELETE /x",
            b"HEAD /",
        ] {
            assert!(looks_like_http(p), "{p:?}");
        }
        // A Kafka frame: 4-byte big-endian size then the api key.
        assert!(!looks_like_http(&[0, 0, 0, 0x2a, 0, 18]));
        assert!(!looks_like_http(b"GE"));
        assert!(!looks_like_http(b"GETX"));
    }

    #[test]
    fn get_with_sniffed_prefix() {
        let out = exchange(
            b"GET ",
            &[b"/metrics HTTP/1.1\r\nHost: x\r\n\r\n"],
            false,
            short_limits(),
        );
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("Content-Type: text/plain; version=0.0.4"),
            "{out}"
        );
        assert!(out.contains("Content-Length: 13\r\n"), "{out}");
        assert!(out.contains("Connection: keep-alive\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nchronik_up 1\n"), "{out}");
    }

    #[test]
    fn pipelined_and_byte_by_byte_requests() {
        let reqs = b"GET /metrics HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /nope HTTP/1.1\r\n\r\n";
        let all = exchange(b"", &[reqs], false, short_limits());
        assert_eq!(statuses(&all), ["200", "200", "404"], "{all}");
        assert!(all.contains("POST 5 hello"), "{all}");
        let bytes: Vec<&[u8]> = reqs.chunks(1).collect();
        let one = exchange(b"", &bytes, false, short_limits());
        assert_eq!(
            one, all,
            "byte-at-a-time delivery must not change the result"
        );
    }

    #[test]
    fn body_split_across_reads_and_bare_lf_lines() {
        let out = exchange(
            b"POST",
            &[b" /echo HTTP/1.1\nContent-Length: 11\n\nhello", b" world"],
            false,
            short_limits(),
        );
        assert!(out.contains("POST 11 hello world"), "{out}");
    }

    #[test]
    fn blank_lines_before_a_request_are_ignored() {
        let out = exchange(
            b"",
            &[
                b"GET /metrics HTTP/1.1\r\n\r\n\r\n",
                b"\r\nGET /metrics HTTP/1.1\r\n\r\n",
            ],
            false,
            short_limits(),
        );
        assert_eq!(statuses(&out), ["200", "200"], "{out}");
    }

    #[test]
    fn large_head_arriving_byte_by_byte() {
        // Just under the head limit, one byte per read: must be served (and
        // quickly: the terminator scan resumes where it stopped).
        let mut req = b"GET /metrics HTTP/1.1\r\n".to_vec();
        let pad = format!("X-Pad: {}\r\n", "a".repeat(300));
        while req.len() + pad.len() < HEAD_BYTES_MAX - 2 {
            req.extend_from_slice(pad.as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let chunks: Vec<&[u8]> = req.chunks(1).collect();
        let t = Instant::now();
        let limits = HttpLimits {
            head_timeout: Duration::from_secs(10),
            ..short_limits()
        };
        let out = exchange(b"", &chunks, false, limits);
        assert_eq!(statuses(&out), ["200"], "{out}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn query_is_split_from_path() {
        struct Q;
        impl HttpHandler for Q {
            fn handle(&self, _: &str, _: &str, _: &[u8]) -> HttpResponse {
                unreachable!("handle_request is overridden")
            }
            fn handle_request(&self, req: &HttpRequest<'_>) -> HttpResponse {
                HttpResponse::text(
                    200,
                    format!(
                        "{}|{}|{}",
                        req.path,
                        req.query,
                        req.header("x-a").unwrap_or("-")
                    ),
                )
            }
        }
        let out = exchange_with(
            b"",
            &[b"GET /api/v1/jobs?consistent=true HTTP/1.1\r\nX-A: b\r\n\r\n"],
            false,
            short_limits(),
            &Q,
        );
        assert!(out.ends_with("/api/v1/jobs|consistent=true|b"), "{out}");
        // Plain handle() sees the path without the query.
        let out = exchange(
            b"",
            &[b"GET /metrics?x=1 HTTP/1.1\r\n\r\n"],
            false,
            short_limits(),
        );
        assert_eq!(statuses(&out), ["200"]);
    }

    #[test]
    fn oversized_body_gets_413_without_calling_the_handler() {
        let called = std::cell::Cell::new(false);
        let h = |_: &str, _: &str, _: &[u8]| {
            called.set(true);
            HttpResponse::text(200, "x")
        };
        let req = format!(
            "POST /echo HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            BODY_BYTES_MAX + 1
        );
        let out = exchange_with(b"", &[req.as_bytes()], false, short_limits(), &h);
        assert_eq!(statuses(&out), ["413"], "{out}");
        assert!(out.contains("Connection: close"), "{out}");
        assert!(!called.get());
        // A 40-digit length saturates to "too large", not a parse failure.
        let out = exchange(
            b"",
            &[b"POST /echo HTTP/1.1\r\nContent-Length: 9999999999999999999999999999999999999999\r\n\r\n"],
            false,
            short_limits(),
        );
        assert_eq!(statuses(&out), ["413"], "{out}");
    }

    #[test]
    fn garbage_and_protocol_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x16\x03\x01\x02\x00 tls hello\r\n\r\n", "400"),
            (b"GET\r\n\r\n", "400"),
            (b"GET /x HTTP/1.1 extra\r\n\r\n", "400"),
            (b"GET x HTTP/1.1\r\n\r\n", "400"),
            (b"GET /x HTTP/2.0\r\n\r\n", "505"),
            (b"GET /x FTP/1.0\r\n\r\n", "400"),
            (b"GET /x HTTP/1.1\r\nno colon\r\n\r\n", "400"),
            (b"GET /x HTTP/1.1\r\n folded: x\r\n\r\n", "400"),
            (b"GET /x HTTP/1.1\r\nBad Name: x\r\n\r\n", "400"),
            (b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "400"),
            (
                b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "400",
            ),
            (
                b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "411",
            ),
            (b"POST /x HTTP/1.1\r\nExpect: magic\r\n\r\n", "417"),
            (b"GET /\xff HTTP/1.1\r\n\r\n", "400"),
        ];
        for (input, want) in cases {
            let out = exchange(b"", &[input], false, short_limits());
            assert_eq!(
                statuses(&out),
                [*want],
                "{:?} -> {out}",
                String::from_utf8_lossy(input)
            );
            assert!(out.contains("Connection: close"), "{out}");
        }
    }

    #[test]
    fn garbage_without_blank_line_is_rejected_early() {
        // Binary junk that never ends a head: rejected at once, not after
        // filling 16 KiB or waiting for the timeout.
        let out = exchange(
            b"",
            &[b"\x00\x00\x00\x2a\x00\x12junk"],
            true,
            short_limits(),
        );
        assert_eq!(statuses(&out), ["400"], "{out}");
    }

    #[test]
    fn head_too_large_gets_431() {
        let mut req = b"GET /x HTTP/1.1\r\n".to_vec();
        while req.len() <= HEAD_BYTES_MAX {
            req.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let out = exchange(b"", &[&req], false, short_limits());
        assert_eq!(statuses(&out), ["431"], "{out}");
        let mut many = b"GET /x HTTP/1.1\r\n".to_vec();
        for i in 0..=HEADERS_MAX {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let out = exchange(b"", &[&many], false, short_limits());
        assert_eq!(statuses(&out), ["431"], "{out}");
    }

    #[test]
    fn connection_close_and_http10() {
        let out = exchange(
            b"",
            &[b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n"],
            false,
            short_limits(),
        );
        assert_eq!(
            statuses(&out),
            ["200"],
            "second request must not be served: {out}"
        );
        assert!(out.contains("Connection: close"));
        let out = exchange(
            b"",
            &[b"GET /metrics HTTP/1.0\r\n\r\n"],
            false,
            short_limits(),
        );
        assert!(out.contains("Connection: close"), "{out}");
        let out = exchange(
            b"",
            &[b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"],
            false,
            short_limits(),
        );
        assert!(out.contains("Connection: keep-alive"), "{out}");
    }

    #[test]
    fn timeouts() {
        // Partial head, then silence: 408 after the head timeout.
        let t = Instant::now();
        let out = exchange(b"", &[b"GET /metrics HTTP/1.1\r\nHo"], true, short_limits());
        assert_eq!(statuses(&out), ["408"], "{out}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // Idle keep-alive connection: closed silently.
        let out = exchange(
            b"",
            &[b"GET /metrics HTTP/1.1\r\n\r\n"],
            true,
            short_limits(),
        );
        assert_eq!(statuses(&out), ["200"], "{out}");
        // Body that never completes: 408.
        let out = exchange(
            b"",
            &[b"POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"],
            true,
            short_limits(),
        );
        assert_eq!(statuses(&out), ["408"], "{out}");
        // Slow loris: a byte every 15 ms keeps each read under the 50 ms
        // timeout, but the deadline covers the whole head, so it still gets
        // 408 (a per-read timeout would wait for all 10 bytes, then see EOF
        // and answer nothing).
        let mut chunks: Vec<&[u8]> = vec![b"GET /x HTTP/1.1\r\nX: "];
        for _ in 0..10 {
            chunks.push(b"");
            chunks.push(b"a");
        }
        let out = exchange(b"", &chunks, false, short_limits());
        assert_eq!(statuses(&out), ["408"], "{out}");
    }

    #[test]
    fn expect_continue_gets_interim_response() {
        let out = exchange(
            b"",
            &[
                b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
                b"ok",
            ],
            false,
            short_limits(),
        );
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
            "{out}"
        );
        assert!(out.ends_with("POST 2 ok"), "{out}");
    }

    #[test]
    fn head_method_has_no_body() {
        let out = exchange(
            b"",
            &[b"HEAD /metrics HTTP/1.1\r\n\r\n"],
            false,
            short_limits(),
        );
        assert!(out.contains("Content-Length: 13\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }

    #[test]
    fn request_bound_per_connection() {
        let limits = HttpLimits {
            requests_per_connection_max: 2,
            ..short_limits()
        };
        let req = b"GET /metrics HTTP/1.1\r\n\r\n";
        let out = exchange(b"", &[req, req, req], false, limits);
        assert_eq!(statuses(&out), ["200", "200"], "{out}");
        assert_eq!(out.matches("Connection: close").count(), 1, "{out}");
    }

    #[test]
    fn response_headers_cannot_inject() {
        let h = |_: &str, _: &str, _: &[u8]| {
            HttpResponse::text(200, "x")
                .with_header("X-Ok", "1")
                .with_header("X-Bad", "1\r\nSet-Cookie: evil")
                .with_header("Content-Length", "999")
        };
        let out = exchange_with(b"", &[b"GET / HTTP/1.1\r\n\r\n"], false, short_limits(), &h);
        assert!(out.contains("X-Ok: 1\r\n"), "{out}");
        assert!(!out.contains("evil"), "{out}");
        assert!(!out.contains("999"), "{out}");
        assert!(
            encode_response(&HttpResponse::text(7, ""), false, false).starts_with(b"HTTP/1.1 500 ")
        );
    }

    #[test]
    fn real_loopback_socket() {
        run(async {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = glommio::spawn_local(async move {
                let conn = listener.accept().await.unwrap();
                serve_connection(conn, b"", &echo).await
            });
            let mut client = glommio::net::TcpStream::connect(addr).await.unwrap();
            client
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
                .await
                .unwrap();
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.unwrap();
            let out = String::from_utf8(out).unwrap();
            assert_eq!(statuses(&out), ["200", "200"], "{out}");
            assert!(out.ends_with("POST 3 abc"), "{out}");
            server.await.unwrap();
        });
    }
}
