//! Prometheus' XOR chunk encoding of float samples (`chunkenc.EncXOR`, the Gorilla encoding with
//! millisecond timestamps), as remote read's `STREAMED_XOR_CHUNKS` answers carry it.
//!
//! The layout, bits written most significant first:
//!
//! - 2 bytes, big-endian: the number of samples;
//! - the first sample: its timestamp as a signed (zigzag) varint, its value's 64 bits;
//! - the second: the timestamp delta as an unsigned varint, then the value as below;
//! - each later one: the delta of the timestamp delta (`dod`) as `0` (zero), `10` + 14 bits,
//!   `110` + 17 bits, `1110` + 20 bits or `1111` + 64 bits (an `n`-bit field holds
//!   `-(2^(n-1) - 1)..=2^(n-1)`, two's complement cut to `n` bits), then the value;
//! - a value is XORed with the previous one: `0` when equal; else `1`, then `0` + the XOR's bits
//!   inside the previous window of leading/trailing zeros when they fit there, or `1` + the
//!   number of leading zeros (5 bits, at most 31) + the number of significant bits (6 bits, 64
//!   written as 0) + those bits.
//!
//! The encoder writes the same bits Prometheus' appender writes (the peer test re-encodes a real
//! Prometheus' chunks and compares the bytes); the decoder reads any chunk of that encoding.

use std::fmt;

/// Samples per chunk, as Prometheus cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// A chunk being written.
#[derive(Clone, Debug)]
pub struct XorChunk {
    bytes: Vec<u8>,
    /// Unused low bits of the last byte.
    free: u32,
    count: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    /// The window of the last value written with its own window; `None` before the first.
    window: Option<(u32, u32)>,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk (its 2-byte count only).
    pub fn new() -> Self {
        XorChunk { bytes: vec![0, 0], free: 0, count: 0, t: 0, t_delta: 0, v: 0, window: None }
    }

    /// Samples written.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no sample was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded chunk.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many (high) bits of the last byte hold data; the rest are zero.
    pub fn bits_used_in_last_byte(&self) -> u32 {
        8 - self.free
    }

    /// Appends a sample; timestamps must not decrease, and a chunk holds at most 65,535 samples.
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(self.count < u16::MAX, "an XOR chunk holds at most {} samples", u16::MAX);
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.write_varint(((t << 1) ^ (t >> 63)) as u64);
                self.write_bits(bits, 64);
            }
            1 => {
                self.t_delta = t.wrapping_sub(self.t) as u64;
                self.write_varint(self.t_delta);
                self.write_value(bits);
            }
            _ => {
                let t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                self.t_delta = t_delta;
                let (prefix, prefix_bits, width) = match dod {
                    0 => (0, 1, 0),
                    _ if fits(dod, 14) => (0b10, 2, 14),
                    _ if fits(dod, 17) => (0b110, 3, 17),
                    _ if fits(dod, 20) => (0b1110, 4, 20),
                    _ => (0b1111, 4, 64),
                };
                self.write_bits(prefix, prefix_bits);
                self.write_bits(dod as u64, width);
                self.write_value(bits);
            }
        }
        self.t = t;
        self.v = bits;
        self.count += 1;
        self.bytes[..2].copy_from_slice(&self.count.to_be_bytes());
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.v;
        if xor == 0 {
            self.write_bits(0, 1);
            return;
        }
        let leading = xor.leading_zeros().min(31);
        let trailing = xor.trailing_zeros();
        match self.window {
            Some((l, t)) if leading >= l && trailing >= t => {
                self.write_bits(0b10, 2);
                self.write_bits(xor >> t, 64 - l - t);
            }
            _ => {
                self.window = Some((leading, trailing));
                let significant = 64 - leading - trailing;
                self.write_bits(0b11, 2);
                self.write_bits(leading as u64, 5);
                self.write_bits(significant as u64 & 0x3f, 6);
                self.write_bits(xor >> trailing, significant);
            }
        }
    }

    fn write_varint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.write_bits((x as u8 | 0x80) as u64, 8);
            x >>= 7;
        }
        self.write_bits(x, 8);
    }

    /// Writes the low `n` bits of `value` (`n` ≤ 64), the highest first.
    fn write_bits(&mut self, value: u64, mut n: u32) {
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let chunk = (value >> (n - take)) & ((1u64 << take) - 1);
            let last = self.bytes.len() - 1;
            self.bytes[last] |= (chunk as u8) << (self.free - take);
            self.free -= take;
            n -= take;
        }
    }
}

/// Whether `dod` fits an `n`-bit field of the encoding: `-(2^(n-1) - 1)..=2^(n-1)`.
fn fits(dod: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= dod && dod <= half
}

/// Why a chunk could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "XOR chunk: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// The samples of an XOR chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>, DecodeError> {
    let [a, b, rest @ ..] = bytes else {
        return Err(DecodeError(format!("{} bytes, shorter than the 2-byte sample count", bytes.len())));
    };
    let count = u16::from_be_bytes([*a, *b]) as usize;
    let mut r = BitReader { bytes: rest, pos: 0 };
    let mut out = Vec::with_capacity(count);
    let (mut t, mut t_delta, mut v) = (0i64, 0u64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    let short = |i: usize| DecodeError(format!("the data ends inside sample {} of {count}", i + 1));
    for i in 0..count {
        match i {
            0 => {
                let z = r.varint().ok_or_else(|| short(i))?;
                t = (z >> 1) as i64 ^ -((z & 1) as i64);
                v = r.bits(64).ok_or_else(|| short(i))?;
                out.push((t, f64::from_bits(v)));
                continue;
            }
            1 => {
                t_delta = r.varint().ok_or_else(|| short(i))?;
            }
            _ => {
                let mut prefix = 0;
                while prefix < 4 && r.bits(1).ok_or_else(|| short(i))? == 1 {
                    prefix += 1;
                }
                let dod = match prefix {
                    0 => 0,
                    4 => r.bits(64).ok_or_else(|| short(i))? as i64,
                    _ => {
                        let n = [14, 17, 20][prefix - 1];
                        let raw = r.bits(n).ok_or_else(|| short(i))? as i64;
                        if raw > 1 << (n - 1) { raw - (1 << n) } else { raw }
                    }
                };
                t_delta = t_delta.wrapping_add(dod as u64);
            }
        }
        t = t.wrapping_add(t_delta as i64);
        if r.bits(1).ok_or_else(|| short(i))? == 1 {
            if r.bits(1).ok_or_else(|| short(i))? == 1 {
                leading = r.bits(5).ok_or_else(|| short(i))? as u32;
                let significant = match r.bits(6).ok_or_else(|| short(i))? as u32 {
                    0 => 64,
                    n => n,
                };
                trailing = 64u32
                    .checked_sub(leading + significant)
                    .ok_or_else(|| DecodeError(format!("sample {}: {leading} leading zeros and {significant} significant bits", i + 1)))?;
            }
            let significant = 64 - leading - trailing;
            v ^= r.bits(significant).ok_or_else(|| short(i))? << trailing;
        }
        out.push((t, f64::from_bits(v)));
    }
    Ok(out)
}

struct BitReader<'a> {
    bytes: &'a [u8],
    /// Bits read.
    pos: usize,
}

impl BitReader<'_> {
    /// The next `n` bits (`n` ≤ 64), the first read the highest.
    fn bits(&mut self, n: u32) -> Option<u64> {
        if self.pos + n as usize > self.bytes.len() * 8 {
            return None;
        }
        let mut out = 0u64;
        let mut left = n;
        while left > 0 {
            let byte = self.bytes[self.pos / 8];
            let offset = (self.pos % 8) as u32;
            let take = left.min(8 - offset);
            let chunk = (byte >> (8 - offset - take)) & (((1u16 << take) - 1) as u8);
            out = (out << take) | chunk as u64;
            self.pos += take as usize;
            left -= take;
        }
        Some(out)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bits(8)?;
            x |= (b & 0x7f) << shift;
            if b < 0x80 {
                return Some(x);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        c.bytes().to_vec()
    }

    fn same_bits(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    #[test]
    fn two_equal_samples_are_the_bytes_worked_out_by_hand() {
        // count 2; zigzag(1000) = 2000 = varint D0 0F; 1.0 = 3FF0 0000 0000 0000; delta 1000 =
        // varint E8 07; an unchanged value is one 0 bit (a zero byte).
        let want = [0x00, 0x02, 0xD0, 0x0F, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0xE8, 0x07, 0x00];
        assert_eq!(encode(&[(1000, 1.0), (2000, 1.0)]), want);
        assert_eq!(decode(&want).unwrap(), vec![(1000, 1.0), (2000, 1.0)]);
    }

    #[test]
    fn a_third_sample_by_hand() {
        // After (0, 1.0), (10, 1.0): t = 21 is a dod of 1 (`10` + 14 bits 00000000000001), and
        // 3.0 = 4008 0000 0000 0000 XOR 3FF0… = 7FF8 0000 0000 0000: 1 leading zero, 51
        // trailing, 12 significant bits: `1` `1` 00001 001100 111111111111.
        let got = encode(&[(0, 1.0), (10, 1.0), (21, 3.0)]);
        // The bits after the second sample's value bit (0): 10 00000000000001 1 1 00001 001100
        // 111111111111, then zero padding.
        let bits = "0".to_string() + "1000000000000001" + "11" + "00001" + "001100" + "111111111111";
        let mut want = vec![0x00, 0x03, 0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0, 0x0A];
        let padded = format!("{bits:0<width$}", width = bits.len().div_ceil(8) * 8);
        want.extend(padded.as_bytes().chunks(8).map(|b| u8::from_str_radix(std::str::from_utf8(b).unwrap(), 2).unwrap()));
        assert_eq!(got, want);
        assert!(same_bits(&decode(&got).unwrap(), &[(0, 1.0), (10, 1.0), (21, 3.0)]));
    }

    #[test]
    fn every_timestamp_bucket_and_value_case_round_trips() {
        // dods at each field's edges: 0, ±(2^13 - 1), 2^13 (14 bits), -2^13 and 2^16 (17 bits),
        // 2^19 (20 bits), -2^19 and 2^40 (64 bits).
        let dods = [0i64, 8191, -8191, 8192, -8192, 65536, -65535, 65537, 524288, -524288, 1 << 40, -(1 << 40), 3];
        let mut t = -5_000i64;
        let mut delta = 15_000i64;
        let values = [
            0.0, -0.0, 1.0, 1.0, 1.5, f64::NAN, f64::from_bits(0x7ff0_0000_0000_0002), f64::INFINITY, f64::NEG_INFINITY,
            1e-300, 123456.789, 123456.79, f64::MIN_POSITIVE, f64::MAX, 42.0,
        ];
        let mut samples = vec![(t, values[0])];
        for (i, dod) in dods.iter().cycle().take(40).enumerate() {
            delta += dod;
            t += delta;
            samples.push((t, values[(i + 1) % values.len()]));
        }
        let bytes = encode(&samples);
        assert!(same_bits(&decode(&bytes).unwrap(), &samples));
        // A counter scraped every 15 s with a little jitter takes a few bytes per sample.
        let counter: Vec<(i64, f64)> = (0..120).map(|i| (1_700_000_000_000 + i * 15_000 + (i % 3), (i * 7) as f64)).collect();
        let bytes = encode(&counter);
        assert!(bytes.len() < 120 * 4, "{} bytes", bytes.len());
        assert!(same_bits(&decode(&bytes).unwrap(), &counter));
    }

    #[test]
    fn truncated_and_malformed_chunks_are_errors() {
        assert!(decode(&[0]).unwrap_err().to_string().contains("shorter than the 2-byte"));
        let bytes = encode(&[(1, 1.0), (2, 2.0), (3, 4.0)]);
        let e = decode(&bytes[..bytes.len() - 2]).unwrap_err().to_string();
        assert!(e.contains("ends inside sample 3 of 3"), "{e}");
        assert_eq!(decode(&[0, 0]).unwrap(), vec![]);
    }
}
