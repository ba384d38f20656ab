//! Compressed sample chunks of the head (Gorilla-style: delta-of-delta timestamps, XOR values).
//!
//! A chunk keeps samples exactly in append order, bit for bit: out-of-order timestamps and
//! duplicates are encoded like any other (a negative delta-of-delta), and values keep their bit
//! pattern (NaN payloads such as Prometheus' staleness marker, ±Inf, -0.0).
//!
//! Timestamps: the delta-of-delta `d` (wrapping i64, zigzag) is written as `0` when zero,
//! `10`+8 bits, `110`+14 bits, `1110`+20 bits, or `1111`+64 bits.
//! Values: `0` when the bits equal the previous value's. Else, when both this value and the
//! previous one are exact decimals at the chunk's scale (`value = mantissa / 10^scale`, see
//! [`crate::decimal`]), `10`, 2 bits of width class and the zigzag mantissa delta in 7, 14, 24
//! or 40 bits (deltas beyond 40 bits go the XOR way). Else `11` and the XOR `x` with the
//! previous value's bits: `0`+the meaningful bits when they fit the previous
//! leading/trailing-zero window, or `1`+6 bits leading zeros+6 bits (length-1)+the meaningful
//! bits. Node-exporter counters and gauges (integers, CPU seconds with 2 decimals) change by
//! small mantissa deltas whose XORs are wide: 5.4 bytes per sample in the tsdb benchmark with
//! XOR alone.
//!
//! The scale starts at 0. After a value written the XOR way that is not a decimal at the
//! scale, the scale becomes the smallest at which it is one (at most [`SCALE_SEARCHES`] times
//! per chunk, so that a series of arbitrary doubles does not search every time); the reader
//! replays the same rule on the values it decodes.

use crate::decimal;

/// Scale searches a chunk makes at most (see the module docs).
pub const SCALE_SEARCHES: u8 = 4;

/// The decimal state shared by the writer and the reader: the chunk's scale and the previous
/// value's mantissa at it.
#[derive(Clone, Copy)]
struct Decimals {
    scale: u8,
    prev: Option<i64>,
    searches_left: u8,
}

impl Default for Decimals {
    fn default() -> Self {
        Decimals { scale: 0, prev: None, searches_left: SCALE_SEARCHES }
    }
}

impl Decimals {
    /// After a value written the XOR way, with `m` its mantissa at the current scale.
    fn after_xor(&mut self, v: f64, m: Option<i64>) {
        self.prev = match m {
            Some(m) => Some(m),
            None if self.searches_left > 0 => {
                self.searches_left -= 1;
                decimal::scale_of(v).and_then(|s| {
                    self.scale = s;
                    decimal::encode(v, s)
                })
            }
            None => None,
        };
    }
}

/// Widths of a mantissa delta by its 2-bit class.
const DELTA_BITS: [u32; 4] = [7, 14, 24, 40];

/// An append-only compressed run of `(timestamp_ms, value)` samples.
#[derive(Clone, Default)]
pub struct Chunk {
    bits: BitWriter,
    count: u32,
    prev_t: i64,
    prev_delta: i64,
    prev_v: u64,
    decimals: Decimals,
    leading: u8,
    trailing: u8,
    /// True once `leading`/`trailing` hold a window a value can reuse.
    window: bool,
    /// Smallest and largest timestamp appended (valid when `count > 0`).
    min_t: i64,
    max_t: i64,
}

impl Chunk {
    /// An empty chunk with room for `bytes` of compressed samples.
    pub fn with_capacity(bytes: usize) -> Chunk {
        Chunk { bits: BitWriter { buf: Vec::with_capacity(bytes), ..Default::default() }, ..Default::default() }
    }

    /// Appends one sample.
    pub fn push(&mut self, t: i64, v: f64) {
        if self.count == 0 {
            (self.min_t, self.max_t) = (t, t);
        } else {
            self.min_t = self.min_t.min(t);
            self.max_t = self.max_t.max(t);
        }
        let delta = t.wrapping_sub(self.prev_t);
        let dod = zigzag(delta.wrapping_sub(self.prev_delta));
        // The sample's bit fields are assembled in one word and written at once.
        let mut f = Fields::default();
        if dod == 0 {
            f.put(0, 1);
        } else if dod < 1 << 8 {
            f.put(0b10, 2);
            f.put(dod, 8);
        } else if dod < 1 << 14 {
            f.put(0b110, 3);
            f.put(dod, 14);
        } else if dod < 1 << 20 {
            f.put(0b1110, 4);
            f.put(dod, 20);
        } else {
            f.put(0b1111, 4);
            f.put(dod, 64);
            // 68 bits: the value's up to 78 would not fit beside them.
            self.bits.write(f.v, f.n);
            f = Fields::default();
        }
        self.prev_delta = delta;
        self.prev_t = t;

        let bits = v.to_bits();
        let x = bits ^ self.prev_v;
        self.prev_v = bits;
        if x == 0 {
            f.put(0, 1);
        } else {
            let m = decimal::encode(v, self.decimals.scale);
            let delta = match (self.decimals.prev, m) {
                (Some(p), Some(m)) => Some(zigzag(m.wrapping_sub(p))),
                _ => None,
            };
            match delta {
                Some(z) if z < 1 << DELTA_BITS[3] => {
                    let class = DELTA_BITS.iter().position(|&n| z < 1 << n).unwrap_or(3);
                    f.put(0b10, 2);
                    f.put(class as u64, 2);
                    f.put(z, DELTA_BITS[class]);
                    self.decimals.prev = m;
                }
                _ => {
                    let leading = x.leading_zeros() as u8;
                    let trailing = x.trailing_zeros() as u8;
                    if self.window && leading >= self.leading && trailing >= self.trailing {
                        f.put(0b110, 3);
                        let len = 64 - self.leading - self.trailing;
                        f.put(x >> self.trailing, len as u32);
                    } else {
                        let len = 64 - leading - trailing;
                        f.put(0b111, 3);
                        f.put(u64::from(leading), 6);
                        f.put(u64::from(len - 1), 6);
                        f.put(x >> trailing, u32::from(len));
                        self.leading = leading;
                        self.trailing = trailing;
                        self.window = true;
                    }
                    self.decimals.after_xor(v, m);
                }
            }
        }
        self.bits.write(f.v, f.n);
        self.count += 1;
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no sample was appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The smallest and largest timestamp, `None` when empty.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (self.count > 0).then_some((self.min_t, self.max_t))
    }

    /// Heap bytes of the encoded data (capacity).
    pub fn heap_bytes(&self) -> usize {
        self.bits.buf.capacity()
    }

    /// Bytes of compressed samples written so far (not the room reserved).
    pub fn byte_len(&self) -> usize {
        self.bits.buf.len() + self.bits.pending.div_ceil(8) as usize
    }

    /// The samples in append order.
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter { r: self.bits.reader(), left: self.count, t: 0, delta: 0, v: 0, decimals: Decimals::default(), leading: 0, trailing: 0 }
    }
}

/// Decoding iterator of a [`Chunk`].
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u32,
    t: i64,
    delta: i64,
    v: u64,
    decimals: Decimals,
    leading: u8,
    trailing: u8,
}

impl Iterator for ChunkIter<'_> {
    type Item = (i64, f64);

    fn next(&mut self) -> Option<(i64, f64)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = &mut self.r;
        let dod = if r.read(1) == 0 {
            0
        } else if r.read(1) == 0 {
            r.read(8)
        } else if r.read(1) == 0 {
            r.read(14)
        } else if r.read(1) == 0 {
            r.read(20)
        } else {
            r.read(64)
        };
        self.delta = self.delta.wrapping_add(unzigzag(dod));
        self.t = self.t.wrapping_add(self.delta);
        if r.read(1) == 1 {
            if r.read(1) == 0 {
                let class = r.read(2) as usize;
                let m = self.decimals.prev.unwrap_or(0).wrapping_add(unzigzag(r.read(DELTA_BITS[class])));
                self.decimals.prev = Some(m);
                self.v = decimal::decode(m, self.decimals.scale).to_bits();
            } else {
                if r.read(1) == 1 {
                    self.leading = r.read(6) as u8;
                    let len = r.read(6) as u8 + 1;
                    self.trailing = 64 - self.leading - len;
                }
                let len = 64 - self.leading - self.trailing;
                self.v ^= r.read(u32::from(len)) << self.trailing;
                let v = f64::from_bits(self.v);
                self.decimals.after_xor(v, decimal::encode(v, self.decimals.scale));
            }
        }
        Some((self.t, f64::from_bits(self.v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bits appended most-significant first: whole 64-bit words in `buf` (big-endian), the
/// newest `pending` bits (< 64) in the low bits of `acc`. Writing only whole words keeps the
/// append path free of read-modify-write on the buffer's last byte.
#[derive(Clone, Default)]
struct BitWriter {
    buf: Vec<u8>,
    acc: u64,
    pending: u32,
}

/// Bit fields of one sample, most significant first (at most 128 bits).
#[derive(Default)]
struct Fields {
    v: u128,
    n: u32,
}

impl Fields {
    /// Appends the low `n` bits of `v` (n ≤ 64; the total stays ≤ 128).
    fn put(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64 && self.n + n <= 128);
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        self.v = (self.v << n) | u128::from(v);
        self.n += n;
    }
}

impl BitWriter {
    /// Writes the low `n` bits of `v` (n ≤ 128).
    fn write(&mut self, v: u128, n: u32) {
        debug_assert!(n <= 128);
        if n > 64 {
            self.write64((v >> 64) as u64, n - 64);
            self.write64(v as u64, 64);
        } else {
            self.write64(v as u64, n);
        }
    }

    /// Writes the low `n` bits of `v` (n ≤ 64).
    fn write64(&mut self, v: u64, n: u32) {
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let total = self.pending + n; // < 128
        let acc = (u128::from(self.acc) << n) | u128::from(v);
        if total < 64 {
            (self.acc, self.pending) = (acc as u64, total);
            return;
        }
        let rest = total - 64;
        if self.buf.len() == self.buf.capacity() {
            // Grow by a quarter (at least 16 bytes): little slack in thousands of small chunks,
            // and few reallocations while one grows.
            self.buf.reserve_exact((self.buf.len() / 4).max(16));
        }
        self.buf.extend_from_slice(&((acc >> rest) as u64).to_be_bytes());
        self.acc = if rest == 0 { 0 } else { (acc as u64) & ((1u64 << rest) - 1) };
        self.pending = rest;
    }

    /// The pending bits left-aligned as the stream's last bytes.
    fn tail(&self) -> [u8; 8] {
        if self.pending == 0 { [0; 8] } else { (self.acc << (64 - self.pending)).to_be_bytes() }
    }

    /// A reader over everything written.
    fn reader(&self) -> BitReader<'_> {
        BitReader { buf: &self.buf, tail: self.tail(), pos: 0 }
    }
}

struct BitReader<'a> {
    buf: &'a [u8],
    /// The writer's pending bits, read after `buf`.
    tail: [u8; 8],
    pos: usize,
}

impl BitReader<'_> {
    fn byte(&self, i: usize) -> u8 {
        match self.buf.get(i) {
            Some(b) => *b,
            None => self.tail.get(i - self.buf.len()).copied().unwrap_or(0),
        }
    }

    /// Reads `n` bits (n ≤ 64); bits past the end read as zero (a chunk's own count bounds reads).
    fn read(&mut self, n: u32) -> u64 {
        debug_assert!(n <= 64);
        if n == 0 {
            return 0;
        }
        let (i, off) = (self.pos / 8, (self.pos % 8) as u32);
        let word = match self.buf.get(i..i + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
            None => u64::from_be_bytes(std::array::from_fn(|k| self.byte(i + k))),
        };
        self.pos += n as usize;
        if off + n <= 64 {
            (word << off) >> (64 - n)
        } else {
            // The field runs into a ninth byte: `64 - off` bits from the word, the rest from it.
            let low = off + n - 64;
            let next = u64::from(self.byte(i + 8));
            (((word << off) >> off) << low) | (next >> (8 - low))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) {
        let mut c = Chunk::default();
        for &(t, v) in samples {
            c.push(t, v);
        }
        let back: Vec<(i64, f64)> = c.iter().collect();
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{a:?} vs {b:?}");
        }
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Writes and reads like the original one-bit-at-a-time stream (MSB first).
    #[test]
    fn bit_fields_match_a_bit_by_bit_stream() {
        let mut rng = Rng(0x0dd_ba11_cafe_f00d);
        for _ in 0..200 {
            let mut w = BitWriter::default();
            let mut bits: Vec<bool> = Vec::new();
            let mut fields = Vec::new();
            for _ in 0..(rng.next() % 60) {
                let n = (rng.next() % 65) as u32;
                let v = rng.next();
                w.write(u128::from(v), n);
                bits.extend((0..n).rev().map(|i| (v >> i) & 1 == 1));
                fields.push((v, n));
            }
            let expected: Vec<u8> = bits
                .chunks(8)
                .map(|c| c.iter().enumerate().fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << (7 - i))))
                .collect();
            let mut written = w.buf.clone();
            written.extend_from_slice(&w.tail()[..(w.pending as usize).div_ceil(8)]);
            assert_eq!(written, expected);
            let mut r = w.reader();
            for (v, n) in fields {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                assert_eq!(r.read(n), v & mask, "{n} bits");
            }
            assert_eq!(r.read(64), 0, "past the end reads zeros");
        }
    }

    #[test]
    fn special_values_and_orders_round_trip() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        round_trip(&[]);
        round_trip(&[(0, 0.0)]);
        round_trip(&[
            (1000, 1.0),
            (1000, 1.0), // duplicate stays a duplicate
            (500, f64::NAN),
            (15_000, stale),
            (30_000, f64::INFINITY),
            (45_000, f64::NEG_INFINITY),
            (i64::MAX, -0.0),
            (i64::MIN, f64::MIN_POSITIVE),
            (-5, f64::MAX),
            (60_000, 1e-300),
        ]);
    }

    #[test]
    fn random_sequences_round_trip() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for case in 0..300 {
            let n = (rng.next() % 300) as usize;
            let mut t = (rng.next() % 2_000_000_000_000) as i64;
            let mut v = 0.0f64;
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                t = match rng.next() % 10 {
                    0 => t - (rng.next() % 100_000) as i64, // out of order
                    1 => t,                                   // duplicate timestamp
                    2 => rng.next() as i64,                   // anywhere
                    _ => t + 15_000 + (rng.next() % 50) as i64 - 25,
                };
                v = match (rng.next() % 8, case % 3) {
                    (0, _) => f64::from_bits(rng.next()), // any bit pattern, NaNs included
                    (1, _) => v,
                    (_, 0) => v + (rng.next() % 1000) as f64,
                    (_, 1) => (rng.next() % 100) as f64 / 7.0,
                    _ => v * 1.0001 + 1.0,
                };
                samples.push((t, v));
            }
            round_trip(&samples);
        }
    }

    /// A CPU-seconds counter (2 decimals, growing by up to 15.00 a scrape every 15 s): each
    /// sample after the first two is a `0` timestamp bit and a `10` + class + 14-bit delta
    /// (zigzag ≤ 3,000 < 2^14): 19 bits.
    #[test]
    fn decimal_counters_round_trip_in_mantissa_deltas() {
        let mut rng = Rng(0xdec1_3a15);
        let mut cents: i64 = 1_234_567;
        let samples: Vec<(i64, f64)> = (0..480)
            .map(|i| {
                cents += (rng.next() % 1501) as i64;
                (1_767_225_600_000 + i * 15_000, cents as f64 / 100.0)
            })
            .collect();
        round_trip(&samples);
        let mut c = Chunk::default();
        for &(t, v) in &samples {
            c.push(t, v);
        }
        // The first two samples: at most 64+ and 24+79 bits.
        let bound = (478 * 19 + 2 * (68 + 79)) / 8 + 8;
        assert!(c.byte_len() <= bound, "{} bytes, at most {bound}", c.byte_len());
    }

    /// The scale follows the values: an integer first (scale 0), then one and two decimals,
    /// then two-decimal values in deltas; negative deltas, staleness markers and values beyond
    /// 2^53 in between.
    #[test]
    fn scale_changes_and_odd_values_round_trip() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let mut samples = vec![(0, 100.0), (1, 100.5), (2, 100.25), (3, 99.75), (4, 101.0), (5, stale), (6, 102.01), (7, 1e20), (8, 102.02)];
        samples.extend((9..40).map(|i| (i, 102.0 - i as f64 * 0.37)));
        samples.extend([(40, 9_007_199_254_740_993.0), (41, -0.0), (42, 0.1), (43, 0.2), (44, 0.30000000000000004), (45, 0.3)]);
        round_trip(&samples);
        let mut rng = Rng(0x5ca1e);
        for _ in 0..300 {
            let scale = (rng.next() % 6) as i32;
            let mut m = (rng.next() % 1_000_000) as i64 - 500_000;
            let samples: Vec<(i64, f64)> = (0..200)
                .map(|i| {
                    m += match rng.next() % 6 {
                        0 => 0,
                        1 => (rng.next() % (1 << 45)) as i64 - (1 << 44), // beyond 40 bits
                        _ => (rng.next() % 20_000) as i64 - 10_000,
                    };
                    let v = if rng.next() % 40 == 0 { f64::from_bits(rng.next()) } else { m as f64 / 10f64.powi(scale) };
                    (i * 15_000, v)
                })
                .collect();
            round_trip(&samples);
        }
    }

    #[test]
    fn regular_scrapes_take_few_bits() {
        let mut c = Chunk::default();
        let mut v = 1e9;
        for i in 0..480 {
            v += 1000.0 + (i % 7) as f64;
            c.push(1_767_225_600_000 + i * 15_000, v);
        }
        // 16 bytes per sample uncompressed.
        assert!(c.bits.buf.len() + 8 < 480 * 5, "{} bytes for 480 samples", c.bits.buf.len());
    }
}
