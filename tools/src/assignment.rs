//! Decoding the consumer protocol's member assignment (the bytes a "consumer" group leader hands
//! each member through SyncGroup, echoed back by DescribeGroups).
//!
//! Layout (all versions 0..=3 share it; big-endian):
//!
//! ```text
//! version      i16
//! topics       i32 count, then per topic:
//!   topic      i16 length + UTF-8 bytes
//!   partitions i32 count + i32 each
//! user_data    i32 length (-1 = null) + bytes
//! ```
//!
//! Worked example: one topic "t" with partitions 0 and 2, no user data, is
//! `00 00 | 00 00 00 01 | 00 01 74 | 00 00 00 02 | 00 00 00 00 | 00 00 00 02 | ff ff ff ff`
//! (25 bytes). Every count is checked against the bytes that remain before anything is
//! allocated, so a hostile assignment cannot make this tool reserve memory it does not have.

use serde::Serialize;

use crate::error::{CtlError, Result};

/// Most topics one assignment may name (far above any real consumer).
pub const MAX_ASSIGNED_TOPICS: usize = 100_000;

/// One member's assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub version: i16,
    /// `(topic, partitions)` in the order the leader wrote them.
    pub topics: Vec<(String, Vec<i32>)>,
    /// Length of the opaque user data (`None` = null).
    pub user_data_bytes: Option<usize>,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(CtlError::Malformed(format!(
                "assignment: {what} needs {n} bytes, {} left",
                self.b.len()
            )));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn i16(&mut self, what: &str) -> Result<i16> {
        Ok(i16::from_be_bytes(
            self.take(2, what)?.try_into().expect("2"),
        ))
    }
    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    /// An array count, checked against the bytes left (`min_elem` bytes per element).
    fn count(&mut self, what: &str, min_elem: usize, max: usize) -> Result<usize> {
        let n = self.i32(what)?;
        let n = usize::try_from(n)
            .map_err(|_| CtlError::Malformed(format!("assignment: negative {what} count {n}")))?;
        if n > max || n.saturating_mul(min_elem) > self.b.len() {
            return Err(CtlError::Malformed(format!(
                "assignment: {what} count {n} does not fit in {} bytes",
                self.b.len()
            )));
        }
        Ok(n)
    }
}

/// Decodes a member assignment. An empty byte string (a member that has not synced yet) is
/// `Ok(None)`.
pub fn decode_assignment(b: &[u8]) -> Result<Option<Assignment>> {
    if b.is_empty() {
        return Ok(None);
    }
    let mut r = Reader { b };
    let version = r.i16("version")?;
    if version < 0 {
        return Err(CtlError::Malformed(format!(
            "assignment: negative version {version}"
        )));
    }
    // Smallest topic entry: 2-byte empty name + 4-byte partition count.
    let n_topics = r.count("topic", 6, MAX_ASSIGNED_TOPICS)?;
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let len = r.i16("topic name length")?;
        let len = usize::try_from(len)
            .map_err(|_| CtlError::Malformed("assignment: null topic name".into()))?;
        let name = std::str::from_utf8(r.take(len, "topic name")?)
            .map_err(|_| CtlError::Malformed("assignment: topic name is not UTF-8".into()))?
            .to_string();
        let n_parts = r.count("partition", 4, usize::MAX)?;
        let mut parts = Vec::with_capacity(n_parts);
        for _ in 0..n_parts {
            parts.push(r.i32("partition")?);
        }
        topics.push((name, parts));
    }
    // user_data is absent in some hand-written assignments; treat a clean end as null.
    let user_data_bytes = if r.b.is_empty() {
        None
    } else {
        let len = r.i32("user data length")?;
        if len < 0 {
            None
        } else {
            Some(r.take(len as usize, "user data")?.len())
        }
    };
    Ok(Some(Assignment {
        version,
        topics,
        user_data_bytes,
    }))
}

/// Encodes an assignment in the layout above (tests and tools that build groups use it).
pub fn encode_assignment(
    version: i16,
    topics: &[(&str, &[i32])],
    user_data: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for (t, parts) in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(&(parts.len() as i32).to_be_bytes());
        for p in *parts {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    match user_data {
        Some(u) => {
            out.extend_from_slice(&(u.len() as i32).to_be_bytes());
            out.extend_from_slice(u);
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    out
}

/// `t:0,2 u:1` — the compact text form used in tables.
pub fn describe(a: &Assignment) -> String {
    a.topics
        .iter()
        .map(|(t, ps)| format!("{t}:{}", crate::output::list(ps)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_worked_example() {
        let b = [
            0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xff, 0xff,
            0xff,
        ];
        assert_eq!(b.len(), 25);
        let a = decode_assignment(&b).unwrap().unwrap();
        assert_eq!(a.version, 0);
        assert_eq!(a.topics, vec![("t".to_string(), vec![0, 2])]);
        assert_eq!(a.user_data_bytes, None);
        assert_eq!(describe(&a), "t:0,2");
        assert_eq!(encode_assignment(0, &[("t", &[0, 2])], None), b.to_vec());
    }

    #[test]
    fn round_trips_several_topics_and_user_data() {
        let b = encode_assignment(3, &[("orders", &[1, 4, 7]), ("x", &[])], Some(b"abc"));
        let a = decode_assignment(&b).unwrap().unwrap();
        assert_eq!(a.version, 3);
        assert_eq!(
            a.topics,
            vec![
                ("orders".to_string(), vec![1, 4, 7]),
                ("x".to_string(), vec![])
            ]
        );
        assert_eq!(a.user_data_bytes, Some(3));
        assert_eq!(describe(&a), "orders:1,4,7 x:");
    }

    #[test]
    fn empty_is_no_assignment() {
        assert_eq!(decode_assignment(&[]).unwrap(), None);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let b = encode_assignment(1, &[("orders", &[1, 4, 7])], Some(b"abc"));
        // Cutting inside user data or anywhere before it must fail; cutting exactly before the
        // user-data length is the accepted "no user data" form.
        let clean_end = b.len() - 4 - 3;
        for cut in 1..b.len() {
            let r = decode_assignment(&b[..cut]);
            if cut == clean_end {
                assert!(r.is_ok(), "cut {cut}");
            } else {
                assert!(r.is_err(), "cut {cut} decoded: {r:?}");
            }
        }
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let mut b = vec![0, 0];
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_assignment(&b).is_err());
        let mut b = encode_assignment(0, &[("t", &[])], None);
        // Patch the partition count (after version 2, count 4, name 2+1) to 2^31-1.
        b[9..13].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_assignment(&b).is_err());
        let mut b = vec![0, 0];
        b.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(decode_assignment(&b).is_err());
    }

    #[test]
    fn seeded_garbage_never_panics() {
        // xorshift64 with a fixed seed: reproducible without an RNG dependency.
        let seed = 0x5eed_c71e_u64;
        let mut x = seed;
        for round in 0..2000 {
            let mut b = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.push((x & 0xff) as u8);
            }
            // Only the absence of a panic is checked; print the seed if one happens.
            let r = std::panic::catch_unwind(|| decode_assignment(&b));
            assert!(r.is_ok(), "panic at round {round}, seed {seed:#x}");
        }
    }
}
