//! Realistic test data: COPY-text-like rows of an e-commerce schema.
//!
//! Dumps are mostly rows like `4711\t2026-11-02 10:31:07+00\tDE\t{"sku": …}\t\\x9a3f…`: numbers,
//! timestamps, repeated vocabulary, JSON and random bytes in hex. Compression benchmarks on
//! random bytes or zeros say nothing about real dumps; these rows compress about like one.

/// A deterministic generator of COPY-text rows (xorshift; same seed, same rows).
pub struct RowGenerator {
    state: u64,
    id: u64,
}

const COUNTRIES: [&str; 8] = ["DE", "FR", "NL", "AT", "CH", "PL", "IT", "ES"];
const WORDS: [&str; 16] = [
    "organic", "cotton", "shirt", "blue", "large", "coffee", "mug", "ceramic", "bamboo", "lamp",
    "walnut", "desk", "wool", "scarf", "linen", "towel",
];
const STATUSES: [&str; 4] = ["pending", "paid", "shipped", "refunded"];

impl RowGenerator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        RowGenerator {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            id: 1,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// Appends one row (ending in `\n`) to `out`.
    pub fn push_row(&mut self, out: &mut Vec<u8>) {
        use std::io::Write;
        let id = self.id;
        self.id += 1;
        let r = self.next();
        let (day, secs) = (1 + r % 28, r % 86_400);
        let (w1, w2, w3) = (self.pick(&WORDS), self.pick(&WORDS), self.pick(&WORDS));
        let country = self.pick(&COUNTRIES);
        let status = self.pick(&STATUSES);
        let cents = self.next() % 100_000;
        let qty = 1 + self.next() % 5;
        let _ = write!(
            out,
            "{id}\t{}\t2026-11-{day:02} {:02}:{:02}:{:02}+00\t{country}\t{status}\t{{\"sku\": \"{w1}-{w2}-{}\", \"title\": \"{w1} {w2} {w3}\", \"qty\": {qty}, \"price_cents\": {cents}}}\t\\\\x",
            1 + r % 500,
            secs / 3600,
            secs % 3600 / 60,
            secs % 60,
            r % 10_000,
        );
        // 24 random bytes in hex: the "encrypted" bytea column of the fixture.
        for _ in 0..3 {
            let _ = write!(out, "{:016x}", self.next());
        }
        out.push(b'\n');
    }

    /// At least `len` bytes of whole rows (truncated to exactly `len`).
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 512);
        while out.len() < len {
            self.push_row(&mut out);
        }
        out.truncate(len);
        out
    }
}
