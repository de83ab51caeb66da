//! CRC32C of a concatenation from the checksums of its parts, without reading the bytes.
//!
//! The broker's produce path has verified each Kafka batch's own CRC32C, which covers all of the
//! batch but its first 21 bytes; combining that value with the CRC of those 21 bytes gives the
//! CRC of the whole batch, so the WAL's record checksum needs no second pass over the payload.
//!
//! Math: CRC32C is linear over GF(2). Appending `n` bytes to a message changes its CRC register
//! as `n` zero bytes would, plus the CRC of those bytes: `crc(A ‖ B) = crc(A) · x^(8n) mod P ⊕
//! crc(B)` with `n = |B|` (the initial and final inversions cancel in this form). Values are in
//! CRC-32C's bit-reflected representation, where bit 31 is the coefficient of `x^0` and a right
//! shift multiplies by `x`. `x^(8n)` is the product of table entries `x^(8·2^k)` over the set bits
//! of `n`, so a combine costs at most 64 multiplications of 32 shift-and-xor steps each
//! (sub-microsecond), where a pass over a 1 MiB payload takes tens of microseconds.

/// The CRC-32C (Castagnoli) polynomial, bit-reflected.
const POLY: u32 = 0x82F6_3B78;

/// `a · b mod P`, both bit-reflected.
const fn mul(a: u32, mut b: u32) -> u32 {
    let mut p = 0;
    let mut i = 0;
    // Bounded: 32 coefficients of `a`, from x^0 (bit 31) up.
    while i < 32 {
        if a & (0x8000_0000 >> i) != 0 {
            p ^= b;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
        i += 1;
    }
    p
}

/// `X8[k] = x^(8·2^k) mod P`: the effect of `2^k` zero bytes on the CRC register.
const X8: [u32; 64] = {
    let mut t = [0u32; 64];
    // x^8: x^0 is bit 31, so x^8 is bit 23.
    t[0] = 0x0080_0000;
    let mut k = 1;
    while k < 64 {
        t[k] = mul(t[k - 1], t[k - 1]);
        k += 1;
    }
    t
};

/// `crc32c(A ‖ B)` from `crc32c(A)`, `crc32c(B)` and `B`'s length in bytes. Works for any
/// initial value `crc_a` was continued from (e.g. a segment's record seed), as
/// `crc32c::crc32c_append(crc_a, B)` would.
pub fn combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut s = crc_a;
    let mut n = len_b;
    let mut k = 0;
    // Bounded: one step per bit of `len_b` (at most 64).
    while n != 0 {
        if n & 1 != 0 {
            s = mul(X8[k], s);
        }
        n >>= 1;
        k += 1;
    }
    s ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn combine_equals_the_crc_of_the_concatenation() {
        for (i, (la, lb)) in [
            (0, 0),
            (0, 1),
            (1, 0),
            (21, 1 << 20),
            (7, 4093),
            (4096, 65_537),
        ]
        .into_iter()
        .enumerate()
        {
            let a = bytes(i as u64, la);
            let b = bytes(100 + i as u64, lb);
            let whole = crc32c::crc32c(&[&a[..], &b[..]].concat());
            let got = combine(crc32c::crc32c(&a), crc32c::crc32c(&b), lb as u64);
            assert_eq!(got, whole, "|A| = {la}, |B| = {lb}");
            // Continuing from a seed, as record CRCs do.
            let seed = crc32c::crc32c(&(i as u64).to_le_bytes());
            let appended = crc32c::crc32c_append(crc32c::crc32c_append(seed, &a), &b);
            let got = combine(
                crc32c::crc32c_append(seed, &a),
                crc32c::crc32c(&b),
                lb as u64,
            );
            assert_eq!(got, appended, "seeded, |A| = {la}, |B| = {lb}");
        }
    }

    #[test]
    fn combine_agrees_with_the_crate_for_large_lengths() {
        // Lengths no test can materialise: check against the crate's (slow) matrix method.
        for (i, len) in [1u64 << 32, (1 << 40) + 12_345, u32::MAX as u64 * 3]
            .into_iter()
            .enumerate()
        {
            let (a, b) = (0x1234_5678 ^ i as u32, 0x9ABC_DEF0 ^ i as u32);
            assert_eq!(
                combine(a, b, len),
                crc32c::crc32c_combine(a, b, len as usize)
            );
        }
    }
}
