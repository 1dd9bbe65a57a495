//! The length walker: before `kafka-protocol` decodes a request, walk its header and body by
//! the request's schema ([`schema::REQUESTS`]) and check every array count, string, bytes
//! and records length and every tagged field against the bytes that remain, exactly as the
//! decoder will read them (non-flexible or flexible version, compact lengths, nulls, known
//! tagged fields as typed values, unknown ones by their size).
//!
//! Why: `kafka-protocol`'s decoders reserve `Vec::with_capacity(n)` with `n` read off the
//! wire before decoding a single element, so a 14-byte frame claiming 2^31 elements asks
//! for hundreds of GiB and the system allocator aborts the process. A frame the walker
//! accepts has every element of every array present (each one takes at least one byte,
//! which `tests::every_array_element_takes_a_byte` checks for every served version), so
//! every count the decoder reserves for is at most the frame's length, and what it reserves
//! is bounded by the frame's size times the size of the largest element type.
//!
//! The walker accepts a frame if and only if `kafka-protocol` decodes it (the tests and the
//! `request_decoder` fuzz target check this), so refusing costs no valid request. It reads
//! the frame once, allocates nothing, and returns how many bytes it read (the decoder, like
//! Kafka, ignores trailing bytes, and so does the walker).

#[doc(hidden)]
pub mod generate;
mod schema;

use std::fmt;
use std::sync::OnceLock;

use kafka_protocol::messages::ApiKey;

/// Why the walker refused a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Byte offset in the frame where the refused item starts.
    pub at: usize,
    /// The field (or header part) being read.
    pub field: &'static str,
    pub why: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}: {}", self.field, self.at, self.why)
    }
}

/// Whether the walker has a schema for requests of `key` at `version`. A request it has
/// none for is refused by [`request`] (and so by `decode_request`).
pub fn covers(key: ApiKey, version: i16) -> bool {
    schema().message(key as i16, version).is_some()
}

/// The (api key, min, max) ranges the walker covers.
pub fn covered() -> impl Iterator<Item = (ApiKey, i16, i16)> {
    schema().messages.iter().map(|m| (m.key, m.min, m.max))
}

/// Walks a whole request frame (header and body, no length prefix). `Ok(n)`: the header and
/// body end at byte `n` and every length in them is present in the frame.
pub fn request(frame: &[u8]) -> Result<usize, Refused> {
    let mut c = Cursor { buf: frame, pos: 0, flexible: false };
    let key = c.int(2, "request_api_key")? as i16;
    let version = c.int(2, "request_api_version")? as i16;
    let refuse = |why| Refused { at: 0, field: "request header", why };
    let api_key = ApiKey::try_from(key).map_err(|_| refuse("unknown api key"))?;
    let msg = schema().message(key, version).ok_or(refuse("no request schema for this api key and version"))?;
    let header_version = api_key.request_header_version(version);
    if !(1..=2).contains(&header_version) {
        return Err(refuse("unsupported header version"));
    }
    c.take(4, "correlation_id")?;
    c.string(true, "client_id")?;
    if header_version >= 2 {
        c.flexible = true;
        c.tags(&[])?;
    }
    c.flexible = version >= msg.flexible;
    c.run(&msg.programs[(version - msg.min) as usize])?;
    Ok(c.pos)
}

#[derive(Debug)]
struct Schema {
    messages: Vec<Message>,
}

#[derive(Debug)]
struct Message {
    key: ApiKey,
    min: i16,
    max: i16,
    /// The first flexible version (`i16::MAX`: none).
    flexible: i16,
    fields: Vec<Field>,
    /// What the walker runs for each version, `min..=max`.
    programs: Vec<Vec<Op>>,
}

#[derive(Debug)]
struct Field {
    name: &'static str,
    kind: Kind,
    min: i16,
    max: i16,
    nullable: bool,
    tag: Option<u32>,
}

#[derive(Debug)]
enum Kind {
    /// A fixed-width value of this many bytes (bool, ints, float64, uuid).
    Fixed(usize),
    String,
    /// Bytes and records.
    Bytes,
    Array(Box<Kind>),
    Struct(Vec<Field>),
}

/// One step of the walk of a body at one version, compiled from the fields: consecutive
/// fixed-width fields are one `Skip`, arrays of fixed-width elements one length check, so
/// the walk takes few steps per element.
#[derive(Debug)]
enum Op {
    Skip(usize, &'static str),
    String { nullable: bool, name: &'static str },
    Bytes { nullable: bool, name: &'static str },
    /// An array of fixed-width elements of this size.
    FixedArray { size: usize, nullable: bool, name: &'static str },
    Array { elem: Box<Op>, nullable: bool, name: &'static str },
    Struct { body: Vec<Op>, nullable: bool, name: &'static str },
    /// The tagged fields section: each known tag with its value's walk, or the field's name
    /// where the tag is not valid in this version.
    Tags(Vec<(u32, Result<Op, &'static str>)>),
}

fn compile(fields: &[Field], v: i16, flexible: bool) -> Vec<Op> {
    let mut ops: Vec<Op> = Vec::new();
    for f in fields.iter().filter(|f| f.tag.is_none() && f.in_version(v)) {
        match (compile_value(&f.kind, f.nullable, v, flexible, f.name), ops.last_mut()) {
            (Op::Skip(n, _), Some(Op::Skip(m, _))) => *m += n,
            (op, _) => ops.push(op),
        }
    }
    if flexible {
        let known = fields
            .iter()
            .filter_map(|f| {
                let op = if f.in_version(v) { Ok(compile_value(&f.kind, f.nullable, v, true, f.name)) } else { Err(f.name) };
                Some((f.tag?, op))
            })
            .collect();
        ops.push(Op::Tags(known));
    }
    ops
}

fn compile_value(kind: &Kind, nullable: bool, v: i16, flexible: bool, name: &'static str) -> Op {
    match kind {
        Kind::Fixed(n) => Op::Skip(*n, name),
        Kind::String => Op::String { nullable, name },
        Kind::Bytes => Op::Bytes { nullable, name },
        Kind::Array(elem) => match &**elem {
            Kind::Fixed(size) => Op::FixedArray { size: *size, nullable, name },
            elem => Op::Array { elem: Box::new(compile_value(elem, false, v, flexible, name)), nullable, name },
        },
        Kind::Struct(fields) => Op::Struct { body: compile(fields, v, flexible), nullable, name },
    }
}

impl Field {
    fn in_version(&self, v: i16) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

impl Schema {
    fn message(&self, key: i16, version: i16) -> Option<&Message> {
        self.messages.iter().find(|m| m.key as i16 == key && (m.min..=m.max).contains(&version))
    }
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| parse(schema::REQUESTS).unwrap_or_else(|e| panic!("request schema: {e}")))
}

/// Parses the schema text (format in [`schema`]).
fn parse(text: &'static str) -> Result<Schema, String> {
    let lines: Vec<(usize, usize, &'static str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(n, l)| {
            let body = l.trim_start();
            (n + 1, (l.len() - body.len()) / 2, body.trim_end())
        })
        .collect();
    let mut messages = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (n, depth, line) = lines[i];
        let err = |what: &str| format!("line {n}: {what}: {line:?}");
        if depth != 0 {
            return Err(err("a message starts unindented"));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let key = ApiKey::iter().find(|k| format!("{k:?}") == words[0]).ok_or_else(|| err("unknown api key"))?;
        let (min, max) = versions(words.get(1).copied().unwrap_or("")).ok_or_else(|| err("bad versions"))?;
        let flexible = match words.get(2..) {
            Some([]) => i16::MAX,
            Some(["flexible", v]) => versions(v).ok_or_else(|| err("bad flexible versions"))?.0,
            _ => return Err(err("expected `Name min-max [flexible N+]`")),
        };
        i += 1;
        let fields = parse_fields(&lines, &mut i, 1)?;
        let programs = (min..=max).map(|v| compile(&fields, v, v >= flexible)).collect();
        messages.push(Message { key, min, max, flexible, fields, programs });
    }
    Ok(Schema { messages })
}

fn parse_fields(lines: &[(usize, usize, &'static str)], i: &mut usize, depth: usize) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    while let Some(&(n, d, line)) = lines.get(*i) {
        if d < depth {
            break;
        }
        let err = |what: &str| format!("line {n}: {what}: {line:?}");
        if d > depth {
            return Err(err("indented too far"));
        }
        *i += 1;
        let mut words = line.split_whitespace();
        let name = words.next().ok_or_else(|| err("no name"))?;
        let ty = words.next().ok_or_else(|| err("no type"))?;
        let (ty, nullable) = match ty.strip_suffix('?') {
            Some(t) => (t, true),
            None => (ty, false),
        };
        let (mut min, mut max, mut tag) = (0, i16::MAX, None);
        let rest: Vec<&str> = words.collect();
        let mut rest = &rest[..];
        if let Some(v) = rest.first().and_then(|w| versions(w)) {
            (min, max) = v;
            rest = &rest[1..];
        }
        match rest {
            [] => {}
            ["tag", t] => tag = Some(t.parse().map_err(|_| err("bad tag"))?),
            _ => return Err(err("expected `Name type [versions] [tag N]`")),
        }
        let kind = match ty {
            "[]" | "{}" => {
                let children = parse_fields(lines, i, depth + 1)?;
                if children.is_empty() {
                    return Err(err("a struct without fields"));
                }
                if ty == "[]" {
                    Kind::Array(Box::new(Kind::Struct(children)))
                } else {
                    Kind::Struct(children)
                }
            }
            _ => match ty.strip_prefix("[]") {
                Some(elem) => Kind::Array(Box::new(primitive(elem).ok_or_else(|| err("unknown element type"))?)),
                None => primitive(ty).ok_or_else(|| err("unknown type"))?,
            },
        };
        fields.push(Field { name, kind, min, max, nullable, tag });
    }
    Ok(fields)
}

fn primitive(ty: &str) -> Option<Kind> {
    Some(match ty {
        "bool" | "int8" => Kind::Fixed(1),
        "int16" | "uint16" => Kind::Fixed(2),
        "int32" | "uint32" => Kind::Fixed(4),
        "int64" | "float64" => Kind::Fixed(8),
        "uuid" => Kind::Fixed(16),
        "string" => Kind::String,
        "bytes" | "records" => Kind::Bytes,
        _ => return None,
    })
}

/// `N+`, `N-M` or `N`.
fn versions(w: &str) -> Option<(i16, i16)> {
    if let Some(n) = w.strip_suffix('+') {
        return Some((n.parse().ok()?, i16::MAX));
    }
    if let Some((a, b)) = w.split_once('-') {
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    let n = w.parse().ok()?;
    Some((n, n))
}

/// A read position in the frame. Every read mirrors the `kafka-protocol` decoder's.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Whether the version being walked is flexible (compact lengths, tagged fields).
    flexible: bool,
}

#[cold]
fn refuse(at: usize, field: &'static str, why: &'static str) -> Refused {
    Refused { at, field, why }
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Refused> {
        if self.buf.len() - self.pos < n {
            return Err(refuse(self.pos, field, "runs past the end of the frame"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A big-endian signed integer of `n` bytes (2 or 4).
    #[inline]
    fn int(&mut self, n: usize, field: &'static str) -> Result<i32, Refused> {
        let b = self.take(n, field)?;
        Ok(if n == 2 { i16::from_be_bytes([b[0], b[1]]) as i32 } else { i32::from_be_bytes([b[0], b[1], b[2], b[3]]) })
    }

    /// An unsigned varint as `kafka-protocol` reads one: at most five bytes, the fifth
    /// taken whole (its high bits, and a continuation bit, ignored).
    #[inline]
    fn uvarint(&mut self, field: &'static str) -> Result<u32, Refused> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.take(1, field)?[0] as u32;
            value |= (b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// A length prefix: `Ok(None)` for null (refused where not nullable), else the length.
    /// Flexible: a compact (length + 1) varint, 0 for null. Otherwise an int of `width`
    /// bytes, -1 for null, other negatives refused.
    #[inline]
    fn length(&mut self, width: usize, nullable: bool, field: &'static str) -> Result<Option<usize>, Refused> {
        let at = self.pos;
        let n = if self.flexible {
            match self.uvarint(field)? {
                0 => None,
                n => Some((n - 1) as usize),
            }
        } else {
            match self.int(width, field)? {
                -1 => None,
                n if n >= 0 => Some(n as usize),
                _ => return Err(refuse(at, field, "negative length")),
            }
        };
        if n.is_none() && !nullable {
            return Err(refuse(at, field, "null where the field is not nullable"));
        }
        Ok(n)
    }

    /// A string: i16 length, or compact in flexible versions (the request header's client
    /// id is never compact: it is read with `flexible` false).
    fn string(&mut self, nullable: bool, field: &'static str) -> Result<(), Refused> {
        if let Some(n) = self.length(2, nullable, field)? {
            let at = self.pos;
            let s = self.take(n, field)?;
            if std::str::from_utf8(s).is_err() {
                return Err(refuse(at, field, "string is not UTF-8"));
            }
        }
        Ok(())
    }

    fn run(&mut self, ops: &[Op]) -> Result<(), Refused> {
        for op in ops {
            self.op(op)?;
        }
        Ok(())
    }

    fn op(&mut self, op: &Op) -> Result<(), Refused> {
        match op {
            Op::Skip(n, name) => {
                self.take(*n, name)?;
            }
            Op::String { nullable, name } => self.string(*nullable, name)?,
            Op::Bytes { nullable, name } => {
                if let Some(n) = self.length(4, *nullable, name)? {
                    self.take(n, name)?;
                }
            }
            Op::FixedArray { size, nullable, name } => {
                if let Some(n) = self.length(4, *nullable, name)? {
                    self.take(n.saturating_mul(*size), name)?;
                }
            }
            Op::Array { elem, nullable, name } => {
                if let Some(n) = self.length(4, *nullable, name)? {
                    // Every element takes at least one byte, so this loop ends within the
                    // frame's length whatever `n` claims.
                    for _ in 0..n {
                        self.op(elem)?;
                    }
                }
            }
            Op::Struct { body, nullable, name } => {
                // A nullable struct has a presence byte: 1 present, anything else null.
                if *nullable && self.take(1, name)?[0] != 1 {
                    return Ok(());
                }
                self.run(body)?;
            }
            Op::Tags(known) => self.tags(known)?,
        }
        Ok(())
    }

    /// A tagged fields section, with the struct's known tags.
    fn tags(&mut self, known: &[(u32, Result<Op, &'static str>)]) -> Result<(), Refused> {
        let count = self.uvarint("tagged fields")?;
        // Each tagged field takes at least two bytes, so this ends within the frame.
        for _ in 0..count {
            let at = self.pos;
            let tag = self.uvarint("tag")?;
            let size = self.uvarint("tagged field size")?;
            match known.iter().find(|(t, _)| *t == tag) {
                Some((_, Ok(op))) => self.op(op)?,
                Some((_, Err(name))) => return Err(refuse(at, name, "tag not valid for this version")),
                None => {
                    self.take(size as usize, "tagged field")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
