//! Compression codecs of Kafka v2 record batches (attribute bits 0..2).
//!
//! The broker never decompresses on the produce/fetch path; log compaction does (it must see the
//! keys), and produce to a compacted topic does (a record without a key is refused there). Every
//! decompression is bounded: the caller passes `max_bytes` and output beyond it is an error
//! ([`CodecError::TooLarge`]), checked while reading, so a decompression bomb costs at most
//! `max_bytes` of memory, never an OOM.
//!
//! Wire formats, as Kafka clients write them:
//! - gzip: one (or more, concatenated) RFC 1952 members.
//! - snappy: Java clients wrap the stream in xerial's framing (magic `82 'SNAPPY' 00`, two
//!   big-endian i32 versions, then blocks of `[i32 compressed length][raw snappy block]`);
//!   librdkafka writes one raw snappy block. Decoding accepts both; encoding writes the xerial
//!   framing, which every client reads.
//! - lz4: the LZ4 frame format (magic `04 22 4D 18`), independent blocks (Kafka's Java stream does
//!   not support dependent blocks), no content checksum.
//! - zstd: one or more zstd frames.

use std::io::{Read, Write};

use thiserror::Error;

/// Default bound on a decompressed record set: Kafka's default `message.max.bytes` is 1 MiB
/// compressed; 64 MiB leaves room for highly compressible batches while bounding memory.
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;
/// xerial snappy stream header: magic (8 bytes), version (4), compatible version (4).
pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial block (xerial's default block size).
const XERIAL_BLOCK_BYTES: usize = 32 << 10;
/// Read granularity of the streaming decoders (bounds each growth step of the output).
const READ_CHUNK_BYTES: usize = 64 << 10;
/// zstd level used when re-compressing (Kafka's default `compression.zstd.level` is 3).
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("unknown compression codec {0}")]
    Unknown(i16),
    #[error("decompressed size exceeds the bound of {max} bytes")]
    TooLarge { max: usize },
    #[error("{codec} data is corrupt: {reason}")]
    Corrupt { codec: &'static str, reason: String },
    #[error("{codec} compression failed: {reason}")]
    Compress { codec: &'static str, reason: String },
}

/// A batch's compression codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec named by a batch's attributes.
    pub fn from_attributes(attributes: i16) -> Result<Self, CodecError> {
        match attributes & crate::batch::COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            c => Err(CodecError::Unknown(c)),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    fn corrupt(self, e: impl std::fmt::Display) -> CodecError {
        CodecError::Corrupt {
            codec: self.name(),
            reason: e.to_string(),
        }
    }

    fn compress_err(self, e: impl std::fmt::Display) -> CodecError {
        CodecError::Compress {
            codec: self.name(),
            reason: e.to_string(),
        }
    }
}

/// Decompresses `input` written with `codec`, refusing output longer than `max_bytes`.
pub fn decompress(
    codec: Compression,
    input: &[u8],
    max_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    match codec {
        Compression::None => {
            if input.len() > max_bytes {
                return Err(CodecError::TooLarge { max: max_bytes });
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => {
            read_bounded(codec, flate2::read::MultiGzDecoder::new(input), max_bytes)
        }
        Compression::Snappy => snappy_decompress(input, max_bytes),
        Compression::Lz4 => {
            read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input), max_bytes)
        }
        Compression::Zstd => {
            let d =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| codec.corrupt(e))?;
            read_bounded(codec, d, max_bytes)
        }
    }
}

/// Compresses `input` with `codec` in the format Kafka clients read.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, CodecError> {
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(
                Vec::with_capacity(input.len() / 2 + 64),
                flate2::Compression::default(),
            );
            e.write_all(input).map_err(|e| codec.compress_err(e))?;
            e.finish().map_err(|e| codec.compress_err(e))
        }
        Compression::Snappy => xerial_compress(input),
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_mode(lz4_flex::frame::BlockMode::Independent)
                .block_size(lz4_flex::frame::BlockSize::Max64KB);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(input.len() / 2 + 64),
            );
            e.write_all(input).map_err(|e| codec.compress_err(e))?;
            e.finish().map_err(|e| codec.compress_err(e))
        }
        Compression::Zstd => {
            zstd::bulk::compress(input, ZSTD_LEVEL).map_err(|e| codec.compress_err(e))
        }
    }
}

/// Reads `r` to the end in chunks, failing as soon as more than `max_bytes` come out.
fn read_bounded(
    codec: Compression,
    mut r: impl Read,
    max_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    // Bounded by max_bytes / READ_CHUNK_BYTES + 1 growing reads plus the final empty read.
    loop {
        let start = out.len();
        if start > max_bytes {
            return Err(CodecError::TooLarge { max: max_bytes });
        }
        // Never grow past max_bytes + 1: one byte beyond the bound proves the excess.
        let room = READ_CHUNK_BYTES.min(max_bytes + 1 - start);
        out.resize(start + room, 0);
        let n = match r.read(&mut out[start..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(codec.corrupt(e)),
        };
        out.truncate(start + n);
        if n == 0 {
            return Ok(out);
        }
    }
}

fn snappy_decompress(input: &[u8], max_bytes: usize) -> Result<Vec<u8>, CodecError> {
    let codec = Compression::Snappy;
    if input.len() >= XERIAL_HEADER_BYTES && input[..8] == XERIAL_MAGIC {
        let mut out = Vec::new();
        let mut pos = XERIAL_HEADER_BYTES;
        let mut dec = snap::raw::Decoder::new();
        // Bounded by input.len() / 4: every block consumes at least its 4-byte length.
        while pos < input.len() {
            let Some(len_bytes) = input.get(pos..pos + 4) else {
                return Err(codec.corrupt("truncated xerial block length"));
            };
            let len = u32::from_be_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
            pos += 4;
            let block = input
                .get(pos..pos.saturating_add(len))
                .ok_or_else(|| codec.corrupt("xerial block longer than the input"))?;
            pos += len;
            let n = snap::raw::decompress_len(block).map_err(|e| codec.corrupt(e))?;
            if out.len() + n > max_bytes {
                return Err(CodecError::TooLarge { max: max_bytes });
            }
            let start = out.len();
            out.resize(start + n, 0);
            let got = dec
                .decompress(block, &mut out[start..])
                .map_err(|e| codec.corrupt(e))?;
            out.truncate(start + got);
        }
        return Ok(out);
    }
    let n = snap::raw::decompress_len(input).map_err(|e| codec.corrupt(e))?;
    if n > max_bytes {
        return Err(CodecError::TooLarge { max: max_bytes });
    }
    let mut out = vec![0u8; n];
    let got = snap::raw::Decoder::new()
        .decompress(input, &mut out)
        .map_err(|e| codec.corrupt(e))?;
    out.truncate(got);
    Ok(out)
}

fn xerial_compress(input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let codec = Compression::Snappy;
    let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + input.len() / 2 + 64);
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
    let mut enc = snap::raw::Encoder::new();
    let mut block = vec![0u8; snap::raw::max_compress_len(XERIAL_BLOCK_BYTES)];
    for chunk in input.chunks(XERIAL_BLOCK_BYTES) {
        let n = enc
            .compress(chunk, &mut block)
            .map_err(|e| codec.compress_err(e))?;
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&block[..n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sample(seed: u64, len: usize) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // Compressible but not trivial: words from a small alphabet.
        (0..len)
            .map(|_| b"abcdefgh \n"[rng.gen_range(0..10)])
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        for seed in 0..4u64 {
            for len in [
                0usize,
                1,
                100,
                XERIAL_BLOCK_BYTES - 1,
                XERIAL_BLOCK_BYTES + 1,
                300_000,
            ] {
                let data = sample(seed, len);
                for c in Compression::ALL {
                    let z = compress(c, &data).unwrap();
                    let back = decompress(c, &z, data.len())
                        .unwrap_or_else(|e| panic!("{c:?} len {len} seed {seed}: {e}"));
                    assert_eq!(back, data, "{c:?} len {len} seed {seed}");
                    if len > 0 {
                        assert!(matches!(
                            decompress(c, &z, len - 1),
                            Err(CodecError::TooLarge { .. })
                        ));
                    }
                }
            }
        }
    }

    #[test]
    fn raw_snappy_as_librdkafka_writes_it_decodes() {
        let data = sample(9, 100_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_ne!(raw[..8], XERIAL_MAGIC);
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
            data
        );
        let framed = compress(Compression::Snappy, &data).unwrap();
        assert_eq!(framed[..8], XERIAL_MAGIC);
        assert!(framed.len() > XERIAL_HEADER_BYTES + 8);
    }

    #[test]
    fn bombs_are_refused_before_allocating() {
        // 64 MiB of zeros compresses to well under 16 MiB; the bound is 1 MiB.
        let zeros = vec![0u8; 64 << 20];
        for c in [
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ] {
            let z = compress(c, &zeros).unwrap();
            assert!(z.len() < 16 << 20, "{c:?} compressed to {}", z.len());
            assert_eq!(
                decompress(c, &z, 1 << 20),
                Err(CodecError::TooLarge { max: 1 << 20 }),
                "{c:?}"
            );
        }
        // A raw snappy header claiming 4 GiB is refused from the header alone.
        let mut lie = Vec::new();
        let mut v: u64 = 0xFFFF_FFFF;
        while v >= 0x80 {
            lie.push((v as u8) | 0x80);
            v >>= 7;
        }
        lie.push(v as u8);
        lie.extend_from_slice(&[0; 8]);
        assert!(decompress(Compression::Snappy, &lie, 1 << 20).is_err());
    }

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        let data = sample(3, 5000);
        for c in Compression::ALL {
            let z = compress(c, &data).unwrap();
            for cut in 0..z.len().min(200) {
                let _ = decompress(c, &z[..cut], 1 << 20);
            }
            let mut flipped = z.clone();
            let mid = flipped.len() / 2;
            flipped[mid] ^= 0x5a;
            let _ = decompress(c, &flipped, 1 << 20);
        }
        assert_eq!(Compression::from_attributes(5), Err(CodecError::Unknown(5)));
        assert_eq!(Compression::from_attributes(0x13), Ok(Compression::Lz4));
    }
}
