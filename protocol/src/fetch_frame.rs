//! Fetch responses without copying record bytes.
//!
//! `kafka-protocol` encodes a response into one buffer, so every fetched batch would be copied
//! into it (and, before that, joined per partition). Here the response is encoded with a
//! 16-byte *sentinel* in place of each large `records` field; the sentinels are then found in the
//! (small) encoded frame, and the frame is returned as parts: encoded metadata slices, new length
//! prefixes, and the stored batch bytes themselves, shared, never copied. The connection writes
//! the parts in order.
//!
//! A sentinel is an 8-byte nonce (fresh per response) plus the 8-byte part number. The splice is
//! used only when every sentinel is found exactly once, in order, right after the length prefix
//! the version's encoding gives a 16-byte field (`i32` 16 before v12, unsigned varint 17 from
//! v12). Anything else (a nonce that happens to occur in a topic name, say) falls back to the
//! ordinary copying encode, so the output is always the exact Kafka encoding.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

use crate::error::Result;
use crate::frame::encode_response;

/// Record fields at least this large are spliced; smaller ones are cheaper to copy than to send
/// as separate parts.
pub const SPLICE_MIN_BYTES: usize = 4096;
const SENTINEL_BYTES: usize = 16;
/// First Fetch version with compact (varint-prefixed) records.
const FIRST_FLEXIBLE_VERSION: i16 = 12;

/// Encodes `resp` as a complete response frame (size prefix included) in `parts`; concatenated,
/// the parts are byte for byte what [`encode_response`] produces. `nonce` should differ between
/// responses (any value is correct; a predictable one only makes the fallback likelier).
pub fn encode_fetch_response_parts(
    parts: &mut Vec<Bytes>,
    correlation_id: i32,
    version: i16,
    resp: FetchResponse,
    nonce: u64,
) -> Result<()> {
    let mut body = ResponseKind::Fetch(resp);
    let ResponseKind::Fetch(resp) = &mut body else {
        unreachable!("constructed as Fetch")
    };
    // Swap the large record fields for sentinels, remembering them in order.
    let mut payloads: Vec<Bytes> = Vec::new();
    let mut swapped: Vec<(usize, usize)> = Vec::new();
    for (ti, t) in resp.responses.iter_mut().enumerate() {
        for (pi, p) in t.partitions.iter_mut().enumerate() {
            if let Some(r) = p.records.as_mut() {
                if r.len() >= SPLICE_MIN_BYTES {
                    let sentinel = sentinel(nonce, payloads.len() as u64);
                    payloads.push(std::mem::replace(r, sentinel));
                    swapped.push((ti, pi));
                }
            }
        }
    }
    let mut out = BytesMut::with_capacity(256);
    encode_response(&mut out, correlation_id, ApiKey::Fetch, version, &body)?;
    if payloads.is_empty() {
        parts.push(out.freeze());
        return Ok(());
    }
    match find_sentinels(&out, nonce, payloads.len(), version) {
        Some(spans) => {
            splice(parts, out, &spans, payloads, version);
            Ok(())
        }
        None => {
            // Restore the records and encode the ordinary way.
            let ResponseKind::Fetch(resp) = &mut body else {
                unreachable!("constructed as Fetch")
            };
            for ((ti, pi), payload) in swapped.into_iter().zip(payloads) {
                resp.responses[ti].partitions[pi].records = Some(payload);
            }
            let mut out = BytesMut::new();
            encode_response(&mut out, correlation_id, ApiKey::Fetch, version, &body)?;
            parts.push(out.freeze());
            Ok(())
        }
    }
}

fn sentinel(nonce: u64, index: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(SENTINEL_BYTES);
    b.put_u64(nonce);
    b.put_u64(index);
    b.freeze()
}

/// For each sentinel, in order: (start of its length prefix, end of the sentinel). `None` unless
/// each occurs exactly once, in order, behind the expected prefix.
fn find_sentinels(
    out: &[u8],
    nonce: u64,
    count: usize,
    version: i16,
) -> Option<Vec<(usize, usize)>> {
    let needle = nonce.to_be_bytes();
    let prefix_len = if version >= FIRST_FLEXIBLE_VERSION {
        1
    } else {
        4
    };
    let mut spans = Vec::with_capacity(count);
    let mut from = 0usize;
    // Bounded by out.len(): every match advances `from`.
    while let Some(k) = find(&out[from..], &needle) {
        let at = from + k;
        let index = out
            .get(at + 8..at + SENTINEL_BYTES)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")))?;
        if index != spans.len() as u64 || at < prefix_len {
            return None;
        }
        let prefix = &out[at - prefix_len..at];
        let ok = if prefix_len == 1 {
            prefix[0] == (SENTINEL_BYTES + 1) as u8
        } else {
            prefix == (SENTINEL_BYTES as i32).to_be_bytes()
        };
        if !ok {
            return None;
        }
        spans.push((at - prefix_len, at + SENTINEL_BYTES));
        from = at + SENTINEL_BYTES;
    }
    (spans.len() == count).then_some(spans)
}

fn find(hay: &[u8], needle: &[u8; 8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Builds the parts: the metadata between sentinels (slices of `out`), each payload behind its
/// real length prefix, and the frame size patched to the spliced length.
fn splice(
    parts: &mut Vec<Bytes>,
    mut out: BytesMut,
    spans: &[(usize, usize)],
    payloads: Vec<Bytes>,
    version: i16,
) {
    let mut prefixes = Vec::with_capacity(payloads.len());
    let mut size = out.len() as i64 - 4;
    for (&(start, end), p) in spans.iter().zip(&payloads) {
        let mut prefix = BytesMut::with_capacity(5);
        if version >= FIRST_FLEXIBLE_VERSION {
            put_unsigned_varint(&mut prefix, p.len() as u64 + 1);
        } else {
            prefix.put_i32(p.len() as i32);
        }
        size += prefix.len() as i64 + p.len() as i64 - (end - start) as i64;
        prefixes.push(prefix.freeze());
    }
    out[..4].copy_from_slice(&(size as i32).to_be_bytes());
    let out = out.freeze();
    let mut at = 0usize;
    for ((&(start, end), prefix), p) in spans.iter().zip(prefixes).zip(payloads) {
        parts.push(out.slice(at..start));
        parts.push(prefix);
        parts.push(p);
        at = end;
    }
    parts.push(out.slice(at..));
}

fn put_unsigned_varint(out: &mut BytesMut, mut v: u64) {
    // Bounded: at most ten 7-bit groups.
    while v >= 0x80 {
        out.put_u8((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    fn response(rng: &mut Rng, version: i16) -> FetchResponse {
        let mut topics = Vec::new();
        for t in 0..1 + rng.below(3) {
            let mut partitions = Vec::new();
            for p in 0..1 + rng.below(4) {
                let records = match rng.below(5) {
                    0 => None,
                    1 => Some(Bytes::new()),
                    2 => Some(Bytes::from(vec![
                        7u8;
                        rng.below(SPLICE_MIN_BYTES as u64) as usize
                    ])),
                    // Large: sizes around the one-byte/multi-byte varint boundaries too.
                    _ => Some(Bytes::from(
                        (0..SPLICE_MIN_BYTES + rng.below(300_000) as usize)
                            .map(|i| (i * 31 + p as usize) as u8)
                            .collect::<Vec<u8>>(),
                    )),
                };
                partitions.push(
                    PartitionData::default()
                        .with_partition_index(p as i32)
                        .with_high_watermark(rng.below(1 << 40) as i64)
                        .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                            .with_producer_id(ProducerId(5))
                            .with_first_offset(3)]))
                        .with_records(records),
                );
            }
            let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                topic = topic.with_topic_id(uuid::Uuid::from_u128(rng.next() as u128));
            } else {
                topic = topic.with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))));
            }
            topics.push(topic);
        }
        let session_id = if version >= 7 {
            rng.below(100) as i32
        } else {
            0
        };
        FetchResponse::default()
            .with_session_id(session_id)
            .with_responses(topics)
    }

    fn plain(version: i16, resp: &FetchResponse) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_response(
            &mut out,
            42,
            ApiKey::Fetch,
            version,
            &ResponseKind::Fetch(resp.clone()),
        )
        .unwrap();
        out.to_vec()
    }

    fn joined(parts: &[Bytes]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    /// Seeded: for every Fetch version and random responses, the parts are exactly the plain
    /// encoding, and large records are passed through (the very same buffers).
    #[test]
    fn spliced_parts_equal_the_plain_encoding() {
        for version in 4i16..=18 {
            for seed in 1..=25u64 {
                let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version as u64);
                let resp = response(&mut rng, version);
                let expected = plain(version, &resp);
                let large: Vec<*const u8> = resp
                    .responses
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .filter_map(|p| p.records.as_ref())
                    .filter(|r| r.len() >= SPLICE_MIN_BYTES)
                    .map(|r| r.as_ptr())
                    .collect();
                let mut parts = Vec::new();
                encode_fetch_response_parts(&mut parts, 42, version, resp, rng.next()).unwrap();
                assert_eq!(joined(&parts), expected, "version {version} seed {seed}");
                let passed: Vec<*const u8> = parts
                    .iter()
                    .filter(|p| p.len() >= SPLICE_MIN_BYTES)
                    .map(|p| p.as_ptr())
                    .collect();
                for ptr in large {
                    assert!(
                        passed.contains(&ptr),
                        "a large record was copied (v{version})"
                    );
                }
            }
        }
    }

    /// A nonce that also occurs elsewhere in the frame (here: in a topic name) makes the splice
    /// give up, and the ordinary encoding is returned.
    #[test]
    fn a_colliding_nonce_falls_back_to_the_plain_encoding() {
        let nonce = u64::from_be_bytes(*b"collide!");
        let records = Bytes::from(vec![1u8; 10_000]);
        for version in [11i16, 12] {
            let resp =
                FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_static_str("xcollide!y")))
                    .with_partitions(vec![
                        PartitionData::default().with_records(Some(records.clone()))
                    ])]);
            let expected = plain(version, &resp);
            let mut parts = Vec::new();
            encode_fetch_response_parts(&mut parts, 42, version, resp, nonce).unwrap();
            assert_eq!(parts.len(), 1, "fell back to one buffer");
            assert_eq!(joined(&parts), expected);
        }
    }
}
