//! Compressed sample chunks of the head (Gorilla-style: delta-of-delta timestamps, XOR values).
//!
//! A chunk keeps samples exactly in append order, bit for bit: out-of-order timestamps and
//! duplicates are encoded like any other (a negative delta-of-delta), and values keep their bit
//! pattern (NaN payloads such as Prometheus' staleness marker, ±Inf, -0.0).
//!
//! Timestamps: the delta-of-delta `d` (wrapping i64, zigzag) is written as `0` when zero,
//! `10`+8 bits, `110`+14 bits, `1110`+20 bits, or `1111`+64 bits.
//! Values: the XOR `x` with the previous value's bits is written as `0` when zero, `10`+the
//! meaningful bits when they fit the previous leading/trailing-zero window, or
//! `11`+6 bits leading zeros+6 bits (length-1)+the meaningful bits.

/// An append-only compressed run of `(timestamp_ms, value)` samples.
#[derive(Clone, Default)]
pub struct Chunk {
    bits: BitWriter,
    count: u32,
    prev_t: i64,
    prev_delta: i64,
    prev_v: u64,
    leading: u8,
    trailing: u8,
    /// True once `leading`/`trailing` hold a window a value can reuse.
    window: bool,
    /// Smallest and largest timestamp appended (valid when `count > 0`).
    min_t: i64,
    max_t: i64,
}

impl Chunk {
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
        let w = &mut self.bits;
        if dod == 0 {
            w.write(0, 1);
        } else if dod < 1 << 8 {
            w.write(0b10, 2);
            w.write(dod, 8);
        } else if dod < 1 << 14 {
            w.write(0b110, 3);
            w.write(dod, 14);
        } else if dod < 1 << 20 {
            w.write(0b1110, 4);
            w.write(dod, 20);
        } else {
            w.write(0b1111, 4);
            w.write(dod, 64);
        }
        self.prev_delta = delta;
        self.prev_t = t;

        let bits = v.to_bits();
        let x = bits ^ self.prev_v;
        self.prev_v = bits;
        if x == 0 {
            w.write(0, 1);
        } else {
            let leading = x.leading_zeros() as u8;
            let trailing = x.trailing_zeros() as u8;
            if self.window && leading >= self.leading && trailing >= self.trailing {
                w.write(0b10, 2);
                let len = 64 - self.leading - self.trailing;
                w.write(x >> self.trailing, len as u32);
            } else {
                let len = 64 - leading - trailing;
                w.write(0b11, 2);
                w.write(u64::from(leading), 6);
                w.write(u64::from(len - 1), 6);
                w.write(x >> trailing, u32::from(len));
                self.leading = leading;
                self.trailing = trailing;
                self.window = true;
            }
        }
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

    /// The samples in append order.
    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter { r: BitReader { buf: &self.bits.buf, pos: 0 }, left: self.count, t: 0, delta: 0, v: 0, leading: 0, trailing: 0 }
    }
}

/// Decoding iterator of a [`Chunk`].
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    left: u32,
    t: i64,
    delta: i64,
    v: u64,
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
            if r.read(1) == 1 {
                self.leading = r.read(6) as u8;
                let len = r.read(6) as u8 + 1;
                self.trailing = 64 - self.leading - len;
            }
            let len = 64 - self.leading - self.trailing;
            self.v ^= r.read(u32::from(len)) << self.trailing;
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

/// Bits appended most-significant first; `used` bits of the last byte are filled.
#[derive(Clone, Default)]
struct BitWriter {
    buf: Vec<u8>,
    used: u8,
}

impl BitWriter {
    /// Writes the low `n` bits of `v` (n ≤ 64): first into the free bits of the last byte, then
    /// the rest as whole big-endian bytes at once (a sample writes up to ~80 bits, and going bit
    /// field by byte was most of the head's append time).
    fn write(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let mut n = n;
        let mut v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let free = if self.used == 0 { 0 } else { 8 - u32::from(self.used) };
        if free > 0 {
            let take = free.min(n);
            let last = self.buf.len() - 1;
            self.buf[last] |= ((v >> (n - take)) as u8) << (free - take);
            self.used += take as u8;
            n -= take;
            if n == 0 {
                return;
            }
            v &= (1u64 << n) - 1; // n < 64 here
        }
        let bytes = n.div_ceil(8) as usize;
        if self.buf.len() + bytes > self.buf.capacity() {
            // Grow by 1/8 (at least 8 bytes): little slack in thousands of small chunks.
            self.buf.reserve_exact((self.buf.len() / 8).max(8).max(bytes));
        }
        self.buf.extend_from_slice(&(v << (64 - n)).to_be_bytes()[..bytes]);
        self.used = ((n - 1) % 8 + 1) as u8;
    }
}

struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// Reads `n` bits (n ≤ 64); bits past the end read as zero (a chunk's own count bounds reads).
    fn read(&mut self, n: u32) -> u64 {
        debug_assert!(n <= 64);
        if n == 0 {
            return 0;
        }
        let (byte, off) = (self.pos / 8, (self.pos % 8) as u32);
        let word = match self.buf.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut w = [0u8; 8];
                let tail = self.buf.get(byte..).unwrap_or(&[]);
                w[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(w)
            }
        };
        self.pos += n as usize;
        if off + n <= 64 {
            (word << off) >> (64 - n)
        } else {
            // The field runs into a ninth byte: `64 - off` bits from the word, the rest from it.
            let low = off + n - 64;
            let next = u64::from(self.buf.get(byte + 8).copied().unwrap_or(0));
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
                w.write(v, n);
                bits.extend((0..n).rev().map(|i| (v >> i) & 1 == 1));
                fields.push((v, n));
            }
            let expected: Vec<u8> = bits
                .chunks(8)
                .map(|c| c.iter().enumerate().fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << (7 - i))))
                .collect();
            assert_eq!(w.buf, expected);
            let mut r = BitReader { buf: &w.buf, pos: 0 };
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

    #[test]
    fn regular_scrapes_take_few_bits() {
        let mut c = Chunk::default();
        let mut v = 1e9;
        for i in 0..480 {
            v += 1000.0 + (i % 7) as f64;
            c.push(1_767_225_600_000 + i * 15_000, v);
        }
        // 16 bytes per sample uncompressed.
        assert!(c.bits.buf.len() < 480 * 5, "{} bytes for 480 samples", c.bits.buf.len());
    }
}
