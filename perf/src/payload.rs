//! Message bodies: a fixed timing header followed by filler, plus seeded size and key choice.
//!
//! The header lets the consumer measure end-to-end latency and check delivery without any
//! shared state with the producer:
//!
//! | bytes  | field                                                          |
//! |--------|----------------------------------------------------------------|
//! | 0..4   | magic `b"CPRF"`                                                |
//! | 4..8   | run id (u32 LE): messages of other runs are counted, not timed  |
//! | 8..12  | producer index (u32 LE)                                        |
//! | 12..16 | reserved, zero                                                 |
//! | 16..24 | sequence number within the producer (u64 LE)                   |
//! | 24..32 | intended send time, ns since the run's monotonic epoch (u64 LE) |
//!
//! The intended send time, not the time `send` was called, is what latency is measured from, so
//! a stalled broker or client cannot hide queueing delay (coordinated omission).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::workload::{KeyDistribution, MessageSize, ProducerSpec};

/// Bytes of timing header at the front of every message.
pub const HEADER_LEN: usize = 32;
const MAGIC: [u8; 4] = *b"CPRF";

/// The decoded timing header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub run_id: u32,
    pub producer: u32,
    pub seq: u64,
    pub intended_ns: u64,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// Precondition: `buf.len() >= HEADER_LEN` (the workload validator enforces the minimum size).
    pub fn write(&self, buf: &mut [u8]) {
        assert!(buf.len() >= HEADER_LEN, "message shorter than its header");
        buf[0..4].copy_from_slice(&MAGIC);
        buf[4..8].copy_from_slice(&self.run_id.to_le_bytes());
        buf[8..12].copy_from_slice(&self.producer.to_le_bytes());
        buf[12..16].copy_from_slice(&[0; 4]);
        buf[16..24].copy_from_slice(&self.seq.to_le_bytes());
        buf[24..32].copy_from_slice(&self.intended_ns.to_le_bytes());
    }

    /// Decodes a header; `None` for anything that is not one of ours (short or wrong magic).
    pub fn read(buf: &[u8]) -> Option<Header> {
        let head = buf.get(..HEADER_LEN)?;
        if head[0..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
        Some(Header {
            run_id: u32_at(4),
            producer: u32_at(8),
            seq: u64_at(16),
            intended_ns: u64_at(24),
        })
    }
}

/// Draws message sizes and keys from the workload's distributions, deterministically per seed.
pub struct MessageGen {
    rng: ChaCha8Rng,
    size: MessageSize,
    /// Cumulative weights for a weighted size choice (same order as the spec).
    size_cdf: Vec<u64>,
    keys: KeyDistribution,
    key_count: u32,
    /// Cumulative 1/(k+1) weights for skewed keys, scaled to integers; empty otherwise.
    key_cdf: Vec<u64>,
    /// Filler bytes reused for every body: random so compression codecs see realistic entropy.
    filler: Vec<u8>,
    key_buf: String,
}

/// Resolution of the skewed-key CDF: weights are scaled so the total fits comfortably in u64.
const KEY_CDF_SCALE: f64 = 1e12;

impl MessageGen {
    /// Builds a generator for one producer. `seed` should differ per producer.
    pub fn new(spec: &ProducerSpec, seed: u64) -> MessageGen {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let max = usize::try_from(spec.message_size.max_bytes()).unwrap_or(HEADER_LEN);
        let mut filler = vec![0u8; max.max(HEADER_LEN)];
        rng.fill(&mut filler[..]);
        let size_cdf = match &spec.message_size {
            MessageSize::Weighted { weighted } => weighted
                .iter()
                .scan(0u64, |acc, (_, w)| {
                    *acc += u64::from(*w);
                    Some(*acc)
                })
                .collect(),
            _ => Vec::new(),
        };
        let key_cdf = if spec.keys == KeyDistribution::Skewed {
            (0..spec.key_count)
                .scan(0u64, |acc, k| {
                    *acc += (KEY_CDF_SCALE / (f64::from(k) + 1.0)) as u64;
                    Some(*acc)
                })
                .collect()
        } else {
            Vec::new()
        };
        MessageGen {
            rng,
            size: spec.message_size.clone(),
            size_cdf,
            keys: spec.keys,
            key_count: spec.key_count,
            key_cdf,
            filler,
            key_buf: String::new(),
        }
    }

    /// The next message size in bytes (always within the validated bounds).
    pub fn next_size(&mut self) -> usize {
        let n = match &self.size {
            MessageSize::Fixed(n) => *n,
            MessageSize::Uniform { min, max } => self.rng.gen_range(*min..=*max),
            MessageSize::Weighted { weighted } => {
                let total = self.size_cdf.last().copied().unwrap_or(1).max(1);
                let x = self.rng.gen_range(0..total);
                let i = self.size_cdf.partition_point(|c| *c <= x);
                weighted
                    .get(i)
                    .map(|(s, _)| *s)
                    .unwrap_or(HEADER_LEN as u64)
            }
        };
        usize::try_from(n)
            .unwrap_or(HEADER_LEN)
            .clamp(HEADER_LEN, self.filler.len())
    }

    /// The next key index, or `None` for keyless messages.
    pub fn next_key_index(&mut self) -> Option<u32> {
        match self.keys {
            KeyDistribution::None => None,
            KeyDistribution::Uniform => Some(self.rng.gen_range(0..self.key_count)),
            KeyDistribution::Skewed => {
                let total = self.key_cdf.last().copied().unwrap_or(1).max(1);
                let x = self.rng.gen_range(0..total);
                let i = self.key_cdf.partition_point(|c| *c <= x);
                Some(u32::try_from(i).unwrap_or(0).min(self.key_count - 1))
            }
        }
    }

    /// The next key as text (`k<index>`), or `None`.
    pub fn next_key(&mut self) -> Option<&str> {
        let k = self.next_key_index()?;
        self.key_buf.clear();
        use std::fmt::Write;
        let _ = write!(self.key_buf, "k{k}");
        Some(&self.key_buf)
    }

    /// Fills `buf` with a message body of `len` bytes carrying `header`.
    pub fn body(&self, header: &Header, len: usize, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&self.filler[..len.min(self.filler.len())]);
        header.write(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Workload;

    fn spec(extra: &str) -> ProducerSpec {
        Workload::from_toml_str(&format!(
            "name = \"x\"\n[[topics]]\nname = \"t\"\npartitions = 1\n[producers]\ncount = 1\n{extra}"
        ))
        .unwrap()
        .producers
    }

    #[test]
    fn header_round_trips_and_rejects_foreign_bytes() {
        let h = Header {
            run_id: 7,
            producer: 3,
            seq: u64::MAX - 1,
            intended_ns: 123_456_789,
        };
        let mut buf = vec![0xAA; 40];
        h.write(&mut buf);
        assert_eq!(Header::read(&buf), Some(h));
        assert_eq!(Header::read(&buf[..31]), None);
        buf[0] = b'X';
        assert_eq!(Header::read(&buf), None);
        assert_eq!(Header::read(&[]), None);
    }

    #[test]
    fn sizes_stay_in_range_and_are_seeded() {
        let s = spec("message_size = { min = 40, max = 90 }");
        let mut a = MessageGen::new(&s, 1);
        let mut b = MessageGen::new(&s, 1);
        for _ in 0..10_000 {
            let n = a.next_size();
            assert!((40..=90).contains(&n));
            assert_eq!(n, b.next_size());
        }
    }

    #[test]
    fn weighted_sizes_follow_weights() {
        let s = spec("message_size = { weighted = [[100, 9], [1000, 1]] }");
        let mut g = MessageGen::new(&s, 42);
        let big = (0..100_000).filter(|_| g.next_size() == 1000).count();
        // Expect 10%; allow a wide margin so the test is about the mapping, not luck.
        assert!((8_000..12_000).contains(&big), "big = {big}");
    }

    #[test]
    fn skewed_keys_are_skewed_and_uniform_are_not() {
        let s = spec("message_size = 64\nkeys = \"skewed\"\nkey_count = 100");
        let mut g = MessageGen::new(&s, 9);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[g.next_key_index().unwrap() as usize] += 1;
        }
        // Key 0 has weight 1/H(100) ~ 19%; key 99 ~ 0.19%.
        assert!(counts[0] > 15_000, "{}", counts[0]);
        assert!(counts[99] < 500, "{}", counts[99]);

        let s = spec("message_size = 64\nkeys = \"uniform\"\nkey_count = 100");
        let mut g = MessageGen::new(&s, 9);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[g.next_key_index().unwrap() as usize] += 1;
        }
        assert!(counts.iter().all(|c| (700..1300).contains(c)));
        assert_eq!(g.next_key().map(|k| k.starts_with('k')), Some(true));
    }

    #[test]
    fn body_carries_header_and_length() {
        let s = spec("message_size = 100");
        let g = MessageGen::new(&s, 1);
        let h = Header {
            run_id: 1,
            producer: 0,
            seq: 5,
            intended_ns: 9,
        };
        let mut buf = Vec::new();
        g.body(&h, 100, &mut buf);
        assert_eq!(buf.len(), 100);
        assert_eq!(Header::read(&buf), Some(h));
    }
}
