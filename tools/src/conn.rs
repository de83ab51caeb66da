//! One blocking connection to one broker: framing, version negotiation, request/response.
//!
//! Every socket has connect, read and write timeouts, so a dead broker costs the operator at most
//! `timeout` per call rather than a hung terminal. The response size prefix is bounded before the
//! buffer is allocated. Versions: on connect we ask ApiVersions, then each request goes out at
//! `min(our max, broker max)` as long as that is at least `max(our min, broker min)`; the ranges
//! this tool speaks are in [`CLIENT_VERSIONS`] and each is chosen so that the message layout it
//! builds (names, not topic ids) is valid across the whole range.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::error::{CtlError, Result};

/// Largest response frame accepted (a Fetch asks for at most [`crate::client::FETCH_MAX_BYTES`]).
pub const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;
/// The client id every request carries (visible in the broker's group member listings).
pub const CLIENT_ID: &str = "chronik-ctl";

/// `(api, min, max)` versions this tool builds requests for. Upper bounds stop before the versions
/// that identify topics by id only (Fetch 13, Produce 13, OffsetCommit 9/OffsetFetch 10 with
/// KIP-848 member epochs and topic ids) because this tool addresses topics by name.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 2, 8),
    (ApiKey::FindCoordinator, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
];

/// Our `(min, max)` for `key`.
pub fn client_range(key: ApiKey) -> Option<(i16, i16)> {
    CLIENT_VERSIONS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// The version to use given our range and the broker's, if they overlap.
pub fn pick_version(ours: (i16, i16), broker: (i16, i16)) -> Option<i16> {
    let v = ours.1.min(broker.1);
    (v >= ours.0.max(broker.0)).then_some(v)
}

/// A connected broker socket and the API versions it advertised.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
    /// api key -> (min, max) as advertised by the broker.
    broker_versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates versions with ApiVersions.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Connection> {
        let io = |op| {
            let addr = addr.to_string();
            move |err| CtlError::Io { op, addr, err }
        };
        let mut last = None;
        let mut stream = None;
        for sa in addr.to_socket_addrs().map_err(io("resolve"))? {
            match TcpStream::connect_timeout(&sa, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) => return Err(io("connect")(e)),
            (None, None) => {
                return Err(CtlError::Invalid(format!("{addr} resolves to no address")));
            }
        };
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io("set read timeout on"))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(io("set write timeout on"))?;
        stream.set_nodelay(true).map_err(io("set nodelay on"))?;
        let mut conn = Connection {
            addr: addr.to_string(),
            stream,
            next_correlation_id: 1,
            broker_versions: HashMap::new(),
        };
        conn.negotiate()?;
        Ok(conn)
    }

    /// The `host:port` this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// ApiVersions v3 first (it carries our name); a broker too old for v3 answers with
    /// UNSUPPORTED_VERSION in a v0 body, and then v0 is asked.
    fn negotiate(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let resp = match self.send_at(&req, 3) {
            Ok(r) if r.error_code != chronik_protocol::api::UNSUPPORTED_VERSION_CODE => r,
            // Only "this broker does not speak v3" is worth a second try; anything else (refused,
            // not Kafka at all) would fail the same way again.
            Ok(_) | Err(CtlError::Codec { .. }) => {
                self.send_at(&ApiVersionsRequest::default(), 0)?
            }
            Err(e) => return Err(e),
        };
        crate::error::check(resp.error_code, || {
            format!("ApiVersions from {}", self.addr)
        })?;
        self.broker_versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// The broker's advertised range for `key`, if it serves it.
    pub fn broker_range(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.broker_versions.get(&(key as i16)).copied()
    }

    /// The version a request of `key` will go out at, or why none fits.
    pub fn version_for(&self, key: ApiKey) -> Result<i16> {
        let ours = client_range(key).expect("every API this tool sends is in CLIENT_VERSIONS");
        let unsupported = |broker: String| CtlError::Unsupported {
            addr: self.addr.clone(),
            api: chronik_protocol::api::name(key),
            ours_min: ours.0,
            ours_max: ours.1,
            broker,
        };
        let broker = self
            .broker_range(key)
            .ok_or_else(|| unsupported("not served".into()))?;
        pick_version(ours, broker)
            .ok_or_else(|| unsupported(format!("{}..={}", broker.0, broker.1)))
    }

    /// Sends `req` at the negotiated version and returns the decoded response and that version.
    pub fn send<R: Request>(&mut self, req: &R) -> Result<(R::Response, i16)> {
        let key = api_key::<R>();
        let version = self.version_for(key)?;
        Ok((self.send_at(req, version)?, version))
    }

    /// Sends `req` at exactly `version`.
    pub fn send_at<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let key = api_key::<R>();
        let api = chronik_protocol::api::name(key);
        let codec = |what: &'static str| {
            move |e: anyhow::Error| CtlError::Codec {
                api,
                version,
                what,
                message: format!("{e:#}"),
            }
        };
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0); // size, patched below
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(codec("encode request header"))?;
        req.encode(&mut buf, version).map_err(codec("encode"))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let io = |op| {
            let addr = self.addr.clone();
            move |err| CtlError::Io { op, addr, err }
        };
        self.stream.write_all(&buf).map_err(io("write to"))?;

        let mut prefix = [0u8; 4];
        self.stream
            .read_exact(&mut prefix)
            .map_err(io("read from"))?;
        if &prefix == b"HTTP" {
            return Err(CtlError::Malformed(format!(
                "{} answered with HTTP, not Kafka: is this the HTTP port rather than the Kafka port?",
                self.addr
            )));
        }
        let size = i32::from_be_bytes(prefix) as i64;
        if size < 4 || size as u64 > MAX_RESPONSE_BYTES as u64 {
            return Err(CtlError::FrameSize {
                addr: self.addr.clone(),
                size,
                max: MAX_RESPONSE_BYTES,
            });
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).map_err(io("read from"))?;
        let mut body = Bytes::from(body);
        let head = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(codec("decode response header"))?;
        if head.correlation_id != correlation_id {
            return Err(CtlError::Correlation {
                addr: self.addr.clone(),
                expected: correlation_id,
                got: head.correlation_id,
            });
        }
        let resp = R::Response::decode(&mut body, version).map_err(codec("decode"))?;
        // Trailing bytes mean we decoded at a version other than the broker encoded; say so.
        if body.has_remaining() {
            return Err(CtlError::Codec {
                api,
                version,
                what: "decode",
                message: format!("{} bytes left over after the response", body.remaining()),
            });
        }
        Ok(resp)
    }
}

/// The [`ApiKey`] of a request type.
pub fn api_key<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("generated request types carry valid keys")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::HeaderVersion;
    use std::net::TcpListener;

    /// Reads one request frame; returns `(api key, version, correlation id)`.
    fn read_request(s: &mut TcpStream) -> (i16, i16, i32) {
        let mut p = [0u8; 4];
        s.read_exact(&mut p).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(p) as usize];
        s.read_exact(&mut body).unwrap();
        let h = chronik_protocol::frame::request_head(&body).unwrap();
        (h.api_key, h.api_version, h.correlation_id)
    }

    fn write_response<M: Encodable + HeaderVersion>(
        s: &mut TcpStream,
        m: &M,
        version: i16,
        correlation_id: i32,
    ) {
        let mut b = BytesMut::new();
        b.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut b, M::header_version(version))
            .unwrap();
        m.encode(&mut b, version).unwrap();
        let n = (b.len() - 4) as i32;
        b[..4].copy_from_slice(&n.to_be_bytes());
        s.write_all(&b).unwrap();
    }

    /// A broker that answers ApiVersions (Metadata 0..=12 only), then runs `rest`.
    fn fake(rest: impl FnOnce(&mut TcpStream) + Send + 'static) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let (key, v, c) = read_request(&mut s);
            assert_eq!(key, ApiKey::ApiVersions as i16);
            let resp = ApiVersionsResponse::default().with_api_keys(vec![
                ApiVersion::default()
                    .with_api_key(ApiKey::ApiVersions as i16)
                    .with_min_version(0)
                    .with_max_version(4),
                ApiVersion::default()
                    .with_api_key(ApiKey::Metadata as i16)
                    .with_min_version(0)
                    .with_max_version(12),
            ]);
            write_response(&mut s, &resp, v, c);
            rest(&mut s);
        });
        addr
    }

    const T: Duration = Duration::from_millis(2000);

    #[test]
    fn negotiates_and_round_trips_at_the_common_version() {
        let addr = fake(|s| {
            let (key, v, c) = read_request(s);
            assert_eq!((key, v), (ApiKey::Metadata as i16, 12));
            write_response(
                s,
                &MetadataResponse::default().with_throttle_time_ms(7),
                v,
                c,
            );
        });
        let mut conn = Connection::connect(&addr, T).unwrap();
        assert_eq!(conn.broker_range(ApiKey::Metadata), Some((0, 12)));
        assert!(matches!(
            conn.version_for(ApiKey::Fetch),
            Err(CtlError::Unsupported { .. })
        ));
        let (resp, v) = conn.send(&MetadataRequest::default()).unwrap();
        assert_eq!((resp.throttle_time_ms, v), (7, 12));
    }

    #[test]
    fn wrong_correlation_id_is_refused() {
        let addr = fake(|s| {
            let (_, v, c) = read_request(s);
            write_response(s, &MetadataResponse::default(), v, c + 100);
        });
        let mut conn = Connection::connect(&addr, T).unwrap();
        let e = conn.send(&MetadataRequest::default()).unwrap_err();
        assert!(matches!(e, CtlError::Correlation { .. }), "{e}");
    }

    #[test]
    fn oversized_and_http_answers_are_refused_before_allocating() {
        let addr = fake(|s| {
            read_request(s);
            s.write_all(&(i32::MAX).to_be_bytes()).unwrap();
        });
        let mut conn = Connection::connect(&addr, T).unwrap();
        let e = conn.send(&MetadataRequest::default()).unwrap_err();
        assert!(matches!(e, CtlError::FrameSize { .. }), "{e}");

        let addr = fake(|s| {
            read_request(s);
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        });
        let mut conn = Connection::connect(&addr, T).unwrap();
        let e = conn.send(&MetadataRequest::default()).unwrap_err();
        assert!(e.to_string().contains("answered with HTTP"), "{e}");
    }

    #[test]
    fn a_silent_broker_times_out() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let addr = fake(move |s| {
            read_request(s);
            // Hold the socket open without answering until the test is done.
            let _ = rx.recv_timeout(Duration::from_secs(10));
        });
        let mut conn = Connection::connect(&addr, Duration::from_millis(300)).unwrap();
        let t0 = std::time::Instant::now();
        let e = conn.send(&MetadataRequest::default()).unwrap_err();
        assert!(matches!(e, CtlError::Io { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        drop(tx);
    }

    #[test]
    fn version_is_highest_common() {
        assert_eq!(pick_version((4, 12), (4, 16)), Some(12));
        assert_eq!(pick_version((4, 12), (0, 8)), Some(8));
        assert_eq!(pick_version((4, 12), (0, 3)), None);
        assert_eq!(pick_version((0, 3), (4, 9)), None);
        assert_eq!(pick_version((2, 2), (2, 2)), Some(2));
    }

    #[test]
    fn client_ranges_are_within_the_crate() {
        use kafka_protocol::messages::*;
        use kafka_protocol::protocol::Message;
        // Our ranges must be ones kafka-protocol can encode, or send_at fails at run time.
        for &(key, lo, hi) in CLIENT_VERSIONS {
            assert!(lo <= hi, "{key:?}");
            let crate_range = match key {
                ApiKey::Produce => ProduceRequest::VERSIONS,
                ApiKey::Fetch => FetchRequest::VERSIONS,
                ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
                ApiKey::Metadata => MetadataRequest::VERSIONS,
                ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
                ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
                ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
                ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
                ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
                ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
                ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
                ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
                ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
                ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
                ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
                ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
                other => panic!("no crate range listed for {other:?}"),
            };
            assert!(
                crate_range.min <= lo && hi <= crate_range.max,
                "{key:?}: ours {lo}..={hi}, crate {crate_range}"
            );
        }
    }
}
