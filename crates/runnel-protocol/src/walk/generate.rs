//! Valid request frames generated from the walker's schema, for tests and fuzz seeds: every
//! array has 0–2 elements (nested ones too), nullable fields are sometimes null, flexible
//! structs carry known and unknown tagged fields. Values are chosen so that `kafka-protocol`
//! re-encodes a decoded frame to the same bytes (booleans 0/1, integers non-negative, known
//! tagged fields never at their default), which is how the tests prove the schema.

use kafka_protocol::messages::ApiKey;

use super::{schema, Field, Kind};

/// A valid frame (no length prefix) of `key` at `version`, varied by `seed`. Panics if the
/// walker has no schema for it.
pub fn frame(key: ApiKey, version: i16, seed: u64) -> Vec<u8> {
    generate(key, version, seed, false)
}

/// Like [`frame`], but the "unknown" tagged fields may take the numbers of known ones (with
/// random bytes as their value, and in versions where the known field is not valid): a
/// frame the decoder may or may not accept, to compare the walker with it.
pub fn frame_with_any_tags(key: ApiKey, version: i16, seed: u64) -> Vec<u8> {
    generate(key, version, seed, true)
}

fn generate(key: ApiKey, version: i16, seed: u64, any_tags: bool) -> Vec<u8> {
    let msg = schema().message(key as i16, version).unwrap_or_else(|| panic!("no schema for {key:?} v{version}"));
    let mut g = Gen { state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1, out: Vec::new(), any_tags };
    g.out.extend_from_slice(&(key as i16).to_be_bytes());
    g.out.extend_from_slice(&version.to_be_bytes());
    g.fixed(4);
    if g.below(4) == 0 {
        g.out.extend_from_slice(&(-1i16).to_be_bytes());
    } else {
        g.string(false);
    }
    if key.request_header_version(version) >= 2 {
        g.tags(&[], version);
    }
    g.fields(&msg.fields, version, version >= msg.flexible, 0);
    g.out
}

struct Gen {
    state: u64,
    out: Vec<u8>,
    any_tags: bool,
}

impl Gen {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % n
    }

    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.out.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn length(&mut self, flexible: bool, width: usize, n: Option<usize>) {
        match (flexible, n) {
            (true, None) => self.out.push(0),
            (true, Some(n)) => self.uvarint(n as u32 + 1),
            (false, n) => {
                let n = n.map_or(-1, |n| n as i32);
                if width == 2 {
                    self.out.extend_from_slice(&(n as i16).to_be_bytes());
                } else {
                    self.out.extend_from_slice(&n.to_be_bytes());
                }
            }
        }
    }

    /// A fixed-width value: 1-byte fields are 0 or 1 (booleans), wider ones non-negative.
    fn fixed(&mut self, n: usize) {
        if n == 1 {
            let b = self.below(2) as u8;
            self.out.push(b);
            return;
        }
        self.out.push(0);
        for _ in 1..n {
            let b = self.below(256) as u8;
            self.out.push(b);
        }
    }

    fn string(&mut self, flexible: bool) {
        let n = self.below(6) as usize;
        self.length(flexible, 2, Some(n));
        for _ in 0..n {
            let c = b'a' + self.below(26) as u8;
            self.out.push(c);
        }
    }

    fn fields(&mut self, fields: &[Field], v: i16, flexible: bool, depth: usize) {
        for f in fields.iter().filter(|f| f.tag.is_none() && f.in_version(v)) {
            self.value(&f.kind, f.nullable, v, flexible, depth);
        }
        if flexible {
            self.tags(fields, v);
        }
    }

    fn value(&mut self, kind: &Kind, nullable: bool, v: i16, flexible: bool, depth: usize) {
        let null = nullable && self.below(5) == 0;
        match kind {
            Kind::Fixed(n) => self.fixed(*n),
            Kind::String if null => self.length(flexible, 2, None),
            Kind::String => self.string(flexible),
            Kind::Bytes if null => self.length(flexible, 4, None),
            Kind::Bytes => {
                let n = self.below(6) as usize;
                self.length(flexible, 4, Some(n));
                for _ in 0..n {
                    let b = self.below(256) as u8;
                    self.out.push(b);
                }
            }
            Kind::Array(_) if null => self.length(flexible, 4, None),
            Kind::Array(elem) => {
                let n = if depth < 3 { self.below(3) as usize } else { 0 };
                self.length(flexible, 4, Some(n));
                for _ in 0..n {
                    self.value(elem, false, v, flexible, depth + 1);
                }
            }
            Kind::Struct(_) if null => self.out.push(0xff),
            Kind::Struct(fields) => {
                if nullable {
                    self.out.push(1);
                }
                self.fields(fields, v, flexible, depth + 1);
            }
        }
    }

    /// A tagged fields section: some of the known tags valid at `v` (never null, so never
    /// at their default) in order, then unknown tags above every known one.
    fn tags(&mut self, fields: &[Field], v: i16) {
        let mut entries: Vec<(u32, Vec<u8>)> = Vec::new();
        for f in fields.iter().filter(|f| f.tag.is_some() && f.in_version(v)) {
            if self.below(2) == 0 {
                let outer = std::mem::take(&mut self.out);
                self.value(&f.kind, false, v, true, 3);
                let value = std::mem::replace(&mut self.out, outer);
                entries.push((f.tag.unwrap(), value));
            }
        }
        let mut first_unknown = fields.iter().filter_map(|f| f.tag).max().map_or(0, |t| t + 1);
        if self.any_tags && self.below(2) == 0 {
            first_unknown = 0;
            entries.clear();
        }
        let mut tag = first_unknown;
        for _ in 0..self.below(3) {
            tag += self.below(3) as u32;
            let value = (0..self.below(4)).map(|_| self.below(256) as u8).collect();
            entries.push((tag, value));
            tag += 1;
        }
        self.uvarint(entries.len() as u32);
        for (tag, value) in entries {
            self.uvarint(tag);
            self.uvarint(value.len() as u32);
            self.out.extend_from_slice(&value);
        }
    }
}
