//! Request/response framing.
//!
//! A Kafka frame is a big-endian `i32` size followed by that many bytes. The size is checked
//! against [`MAX_REQUEST_BYTES`] before a buffer is allocated, so a hostile length prefix costs the
//! broker nothing but one closed connection.
//!
//! Request layout after the size: `api_key i16, api_version i16, correlation_id i32, client_id
//! nullable-string` and, for flexible versions (header v2), a tagged-field section. The first
//! eight bytes are fixed in every header version, which is what lets the broker answer an unknown
//! key or version with the right correlation id without understanding the rest.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;

use crate::api;
use crate::error::{ProtocolError, Result};

/// Largest request the broker accepts (Kafka's `socket.request.max.bytes` default, 100 MiB).
pub const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;
/// The fixed part of every request header: api key, api version, correlation id.
pub const REQUEST_HEAD_BYTES: usize = 8;

/// The fixed first eight bytes of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Validates a size prefix. Returns the body length to read.
pub fn frame_len(prefix: [u8; 4], max: usize) -> Result<usize> {
    let size = i32::from_be_bytes(prefix) as i64;
    if size < REQUEST_HEAD_BYTES as i64 || size as u64 > max as u64 {
        return Err(ProtocolError::FrameSize { size, max });
    }
    Ok(size as usize)
}

/// Reads the fixed head of a request frame (the bytes after the size prefix).
pub fn request_head(frame: &[u8]) -> Result<RequestHead> {
    if frame.len() < REQUEST_HEAD_BYTES {
        return Err(ProtocolError::TruncatedHeader { len: frame.len() });
    }
    Ok(RequestHead {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes a whole request frame (without its size prefix).
///
/// Unknown keys and versions outside [`api::supported`] are reported as such (the caller answers
/// them); a body that does not match its schema is [`ProtocolError::Malformed`].
pub fn decode_request(frame: Bytes) -> Result<Request> {
    let head = request_head(&frame)?;
    let api_key = ApiKey::try_from(head.api_key).map_err(|_| ProtocolError::UnknownApiKey {
        api_key: head.api_key,
    })?;
    let range = api::supported(api_key).ok_or(ProtocolError::UnknownApiKey {
        api_key: head.api_key,
    })?;
    if head.api_version < range.0 || head.api_version > range.1 {
        return Err(ProtocolError::UnsupportedVersion {
            api_key: head.api_key,
            version: head.api_version,
        });
    }
    let mut buf = frame;
    let header_version = api_key.request_header_version(head.api_version);
    let malformed = |reason: String| ProtocolError::Malformed {
        api: api::name(api_key),
        version: head.api_version,
        reason,
    };
    let header =
        RequestHeader::decode(&mut buf, header_version).map_err(|e| malformed(e.to_string()))?;
    let body = RequestKind::decode(api_key, &mut buf, head.api_version)
        .map_err(|e| malformed(e.to_string()))?;
    Ok(Request {
        api_key,
        version: head.api_version,
        header,
        body,
    })
}

/// Appends one size-prefixed response frame to `out`.
pub fn encode_response(
    out: &mut BytesMut,
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<()> {
    let start = out.len();
    out.put_i32(0); // size, patched below
    put_response_header(out, correlation_id, body.header_version(version));
    if let Err(e) = body.encode(out, version) {
        out.truncate(start);
        return Err(ProtocolError::Encode {
            api: api::name(api_key),
            version,
            reason: e.to_string(),
        });
    }
    patch_size(out, start);
    Ok(())
}

/// Writes a response header of the given version (0: correlation id; 1: plus empty tagged fields).
pub fn put_response_header(out: &mut BytesMut, correlation_id: i32, header_version: i16) {
    out.put_i32(correlation_id);
    if header_version >= 1 {
        out.put_u8(0); // no tagged fields
    }
}

/// Patches the size prefix of a frame that starts at `start`.
pub fn patch_size(out: &mut BytesMut, start: usize) {
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// The answer to a request whose key is unknown or whose version is unsupported: the correlation
/// id and error code 35 (UNSUPPORTED_VERSION). For ApiVersions this is Kafka's own behaviour: a v0
/// response carrying the error and the supported ranges so the client can retry with a version
/// both sides speak.
pub fn encode_unsupported(out: &mut BytesMut, head: RequestHead) {
    if head.api_key == ApiKey::ApiVersions as i16 {
        let body =
            ResponseKind::ApiVersions(api::api_versions_response(api::UNSUPPORTED_VERSION_CODE));
        encode_response(out, head.correlation_id, ApiKey::ApiVersions, 0, &body)
            .expect("ApiVersions v0 always encodes");
        return;
    }
    let start = out.len();
    out.put_i32(0);
    out.put_i32(head.correlation_id);
    out.put_i16(api::UNSUPPORTED_VERSION_CODE);
    patch_size(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, RequestHeader};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn request_frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let mut b = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        header
            .encode(&mut b, key.request_header_version(version))
            .unwrap();
        body.encode(&mut b, version).unwrap();
        b.freeze()
    }

    #[test]
    fn frame_len_bounds() {
        assert!(frame_len((-1i32).to_be_bytes(), MAX_REQUEST_BYTES).is_err());
        assert!(frame_len(0i32.to_be_bytes(), MAX_REQUEST_BYTES).is_err());
        assert!(frame_len(7i32.to_be_bytes(), MAX_REQUEST_BYTES).is_err());
        assert_eq!(frame_len(8i32.to_be_bytes(), MAX_REQUEST_BYTES).unwrap(), 8);
        assert!(frame_len(i32::MAX.to_be_bytes(), MAX_REQUEST_BYTES).is_err());
        // "GET " as a size is ~1.2 GB: rejected, which is how HTTP is told apart from Kafka.
        assert!(frame_len(*b"GET ", MAX_REQUEST_BYTES).is_err());
    }

    #[test]
    fn decodes_flexible_and_legacy_requests() {
        for v in [0i16, 3, 4] {
            let f = request_frame(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
            let r = decode_request(f).unwrap();
            assert_eq!(r.api_key, ApiKey::ApiVersions);
            assert_eq!(r.header.correlation_id, 7);
        }
        let f = request_frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(matches!(
            decode_request(f).unwrap().body,
            RequestKind::Metadata(_)
        ));
    }

    #[test]
    fn unknown_and_unsupported_are_reported() {
        let mut f = BytesMut::new();
        f.put_i16(999);
        f.put_i16(0);
        f.put_i32(5);
        assert!(matches!(
            decode_request(f.freeze()),
            Err(ProtocolError::UnknownApiKey { api_key: 999 })
        ));
        let f = request_frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        let mut raw = BytesMut::from(&f[..]);
        raw[2..4].copy_from_slice(&100i16.to_be_bytes());
        assert!(matches!(
            decode_request(raw.freeze()),
            Err(ProtocolError::UnsupportedVersion { .. })
        ));
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors_not_panics() {
        let f = request_frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        for cut in 0..f.len() {
            let _ = decode_request(f.slice(..cut));
        }
        // Deterministic garbage after a valid head.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for len in 8..300 {
            let mut b = BytesMut::new();
            b.put_i16(ApiKey::Produce as i16);
            b.put_i16(9);
            b.put_i32(1);
            for _ in 8..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.put_u8(x as u8);
            }
            let _ = decode_request(b.freeze());
        }
    }

    #[test]
    fn unsupported_answer_carries_correlation_id() {
        let mut out = BytesMut::new();
        encode_unsupported(
            &mut out,
            RequestHead {
                api_key: 999,
                api_version: 0,
                correlation_id: 42,
            },
        );
        assert_eq!(&out[..], &[0, 0, 0, 6, 0, 0, 0, 42, 0, 35]);
        let mut out = BytesMut::new();
        encode_unsupported(
            &mut out,
            RequestHead {
                api_key: 18,
                api_version: 99,
                correlation_id: 1,
            },
        );
        assert_eq!(&out[8..10], &35i16.to_be_bytes());
    }
}
