//! The stored shape of records: frames with a checksum, chained by hash.
//!
//! ```text
//! frame  = body_len: u32 LE | crc32(body): u32 LE | body
//! body   = format: u16 LE | offset: u64 LE | term: u64 LE | at_micros: i64 LE
//!        | prev_hash: [u8; 32] | payload (`Entry { actor, event }`, packed; JSON up to format 4)
//! hash   = blake3(body)
//! ```
//!
//! `prev_hash` of the first record is [`GENESIS`]; of every other record, the hash of the
//! record before it. Changing any byte of a record changes its hash and breaks the link from
//! its successor, so `verify` finds tampering as well as rot. The checksum is cheap and
//! checked on every read; the hash chain is checked by `verify` and when a log is opened.
//!
//! A payload is encoded once, by the member that takes the append ([`Payload`]); raft carries
//! those bytes and every member stores them as they are, so the chains stay identical.
//!
//! Pure: no I/O. The engine stores runs of frames; golden tests store them in files.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::event::{Entry, Term, Timestamp};
use crate::record::{Offset, Record};

/// The format this binary writes: payloads in the packed encoding of [`crate::indexed`].
pub const FORMAT: u16 = 5;
/// The last format whose payloads are JSON.
pub const JSON_FORMAT: u16 = 4;
/// The newest format this binary can read. A record of a later format is refused, not guessed.
pub const MAX_READ_FORMAT: u16 = 5;

pub type Hash = [u8; 32];
/// The `prev_hash` of offset 1.
pub const GENESIS: Hash = [0; 32];

const FRAME_HEADER: usize = 8;
const BODY_HEADER: usize = 2 + 8 + 8 + 8 + 32;

/// Largest payload accepted, encoded. Bounds memory on decode and keeps one record from
/// dominating a batch; 1 MiB is far beyond any event the APIs accept (their bodies are capped
/// lower).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The fixed fields of a record, as framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: u16,
    pub offset: u64,
    pub term: Term,
    pub at: Timestamp,
    pub prev_hash: Hash,
}

/// A frame whose checksum has been checked, borrowed from the buffer it was read from.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub header: Header,
    body: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn payload(&self) -> &'a [u8] {
        &self.body[BODY_HEADER..]
    }

    /// The hash the next record must name as its `prev_hash`.
    pub fn hash(&self) -> Hash {
        *blake3::hash(self.body).as_bytes()
    }

    /// Decodes the payload into a record, refusing formats newer than this binary reads.
    pub fn decode(&self) -> Result<Record> {
        let h = &self.header;
        let entry = decode_payload(h.format, h.offset, self.payload())?;
        let offset = Offset::new(h.offset).ok_or_else(|| Error::Corrupt {
            offset: 0,
            detail: "offset 0 in a frame".into(),
        })?;
        Ok(Record {
            offset,
            term: h.term,
            at: h.at,
            actor: entry.actor,
            event: entry.event,
        })
    }
}

/// Decodes the payload of a record of `format` at `offset` (named in errors).
pub fn decode_payload(format: u16, offset: u64, payload: &[u8]) -> Result<Entry> {
    if format > MAX_READ_FORMAT || format == 0 {
        return Err(Error::UnsupportedFormat {
            offset,
            found: format,
            supported: MAX_READ_FORMAT,
        });
    }
    let decode = |source| Error::Decode { offset, source };
    if format <= JSON_FORMAT {
        // Validated as UTF-8 once, as a whole: `from_str` then skips checking each string.
        let text = std::str::from_utf8(payload).map_err(|e| Error::Corrupt {
            offset,
            detail: format!("payload is not UTF-8: {e}"),
        })?;
        return serde_json::from_str(text).map_err(|e| decode(e.into()));
    }
    // A reader over the slice rather than `from_slice`, which cannot tell what it left over.
    let mut rest = payload;
    let entry = Entry::deserialize(&mut rmp_serde::Deserializer::new(&mut rest))
        .map_err(|e| decode(e.into()))?;
    if !rest.is_empty() {
        return Err(decode(
            format!("{} bytes after the entry", rest.len()).into(),
        ));
    }
    Ok(entry)
}

/// An entry encoded for the log: what an append hands to raft and a frame stores, byte for
/// byte, on every member. Encoded once, by the member that takes the append: a member that
/// encoded it again could, in another version, write other bytes and break the chain.
#[derive(Debug, Clone)]
pub enum Payload {
    /// The packed encoding ([`crate::indexed`]), stored as format [`FORMAT`]: a fifth of
    /// JSON's bytes, and half its decode time (BENCHMARKS.md, twelfth session).
    Packed(Vec<u8>),
    /// JSON, stored as format [`JSON_FORMAT`]: what raft entries written by an older binary
    /// hold. Stored as that binary stored it, so the chains stay identical.
    Json(Box<RawValue>),
}

impl Payload {
    /// Encodes an entry. Done by the appender, off the writer's critical path.
    pub fn pack(entry: &Entry) -> Result<Self> {
        let bytes = crate::indexed::to_vec(entry).map_err(Error::Pack)?;
        if bytes.len() > MAX_PAYLOAD {
            return Err(Error::RecordTooLarge {
                len: bytes.len(),
                limit: MAX_PAYLOAD,
            });
        }
        Ok(Self::Packed(bytes))
    }

    /// The format of the frame that stores it.
    pub fn format(&self) -> u16 {
        match self {
            Self::Packed(_) => FORMAT,
            Self::Json(_) => JSON_FORMAT,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Packed(bytes) => bytes,
            Self::Json(raw) => raw.get().as_bytes(),
        }
    }

    /// The entry, as if stored at `offset` (named in errors).
    pub fn decode(&self, offset: u64) -> Result<Entry> {
        decode_payload(self.format(), offset, self.bytes())
    }
}

/// In raft's JSON (entries, messages): packed bytes as a base64 string, JSON as itself. Only
/// JSON carries raft entries, so the `RawValue` a legacy payload needs is always available.
impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use base64::Engine;
        match self {
            Self::Packed(bytes) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Self::Json(raw) => raw.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use base64::Engine;
        use serde::de::Error as _;
        let raw = Box::<RawValue>::deserialize(d)?;
        if !raw.get().starts_with('"') {
            return Ok(Self::Json(raw));
        }
        // Base64 has no character JSON escapes: the string borrows.
        let text: &str = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Self::Packed)
            .map_err(|e| D::Error::custom(format!("packed payload: {e}")))
    }
}

/// Appends one frame to `out` and returns its hash.
pub fn write_frame(out: &mut Vec<u8>, header: &Header, payload: &[u8]) -> Hash {
    let body_len = BODY_HEADER + payload.len();
    out.reserve(FRAME_HEADER + body_len);
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let body_start = out.len();
    out.extend_from_slice(&header.format.to_le_bytes());
    out.extend_from_slice(&header.offset.to_le_bytes());
    out.extend_from_slice(&header.term.0.to_le_bytes());
    out.extend_from_slice(&header.at.as_micros().to_le_bytes());
    out.extend_from_slice(&header.prev_hash);
    out.extend_from_slice(payload);
    let body = &out[body_start..];
    let crc = crc32fast::hash(body);
    let hash = *blake3::hash(body).as_bytes();
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// Iterates the frames of a buffer. `expected_offset` is the offset the first frame must have;
/// it names the position in errors, since a frame that fails its checksum has no trustworthy
/// offset of its own.
#[derive(Debug)]
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    expected: u64,
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8], expected_offset: u64) -> Self {
        Self {
            buf,
            pos: 0,
            expected: expected_offset,
        }
    }

    /// Bytes consumed by the frames returned so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::Corrupt {
            offset: self.expected,
            detail,
        }
    }

    fn next_frame(&mut self) -> Result<Frame<'a>> {
        let rest = &self.buf[self.pos..];
        if rest.len() < FRAME_HEADER {
            return Err(self.corrupt(format!("torn frame header ({} bytes)", rest.len())));
        }
        let body_len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if !(BODY_HEADER..=BODY_HEADER + MAX_PAYLOAD).contains(&body_len) {
            return Err(self.corrupt(format!("impossible frame length {body_len}")));
        }
        if rest.len() < FRAME_HEADER + body_len {
            return Err(self.corrupt(format!(
                "torn frame: {} of {} body bytes",
                rest.len() - FRAME_HEADER,
                body_len
            )));
        }
        let body = &rest[FRAME_HEADER..FRAME_HEADER + body_len];
        if crc32fast::hash(body) != crc {
            return Err(self.corrupt("checksum mismatch".into()));
        }
        let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().expect("8 bytes"));
        let header = Header {
            format: u16::from_le_bytes([body[0], body[1]]),
            offset: u64_at(2),
            term: Term(u64_at(10)),
            at: Timestamp::from_micros(u64_at(18) as i64),
            prev_hash: body[26..58].try_into().expect("32 bytes"),
        };
        if header.offset != self.expected {
            return Err(self.corrupt(format!("frame holds offset {}", header.offset)));
        }
        self.pos += FRAME_HEADER + body_len;
        self.expected += 1;
        Ok(Frame { header, body })
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos == self.buf.len() {
            return None;
        }
        let frame = self.next_frame();
        if frame.is_err() {
            // A broken frame ends the buffer: nothing after it can be located.
            self.pos = self.buf.len();
        }
        Some(frame)
    }
}

/// Walks frames checking the hash chain, as `verify` and recovery do.
#[derive(Debug, Clone, Copy)]
pub struct ChainCheck {
    pub prev_hash: Hash,
    pub prev_at: Timestamp,
}

impl ChainCheck {
    pub const fn genesis() -> Self {
        Self {
            prev_hash: GENESIS,
            prev_at: Timestamp::UNIX_EPOCH,
        }
    }

    /// Checks that `frame` follows the frames seen so far, then takes it as the new tip.
    pub fn check(&mut self, frame: &Frame<'_>) -> Result<()> {
        let h = &frame.header;
        if h.prev_hash != self.prev_hash {
            return Err(Error::ChainBroken { offset: h.offset });
        }
        if h.at < self.prev_at {
            return Err(Error::Corrupt {
                offset: h.offset,
                detail: format!("time went back from {} to {}", self.prev_at, h.at),
            });
        }
        self.prev_hash = frame.hash();
        self.prev_at = h.at;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Event, FormatBarrier};

    fn frames(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = GENESIS;
        for offset in 1..=n {
            let entry = Entry {
                actor: Actor::system(),
                event: Event::FormatBarrier(FormatBarrier { min_format: 1 }),
            };
            let header = Header {
                format: FORMAT,
                offset,
                term: Term(1),
                at: Timestamp::from_micros(offset as i64),
                prev_hash: prev,
            };
            prev = write_frame(&mut out, &header, Payload::pack(&entry).unwrap().bytes());
        }
        out
    }

    #[test]
    fn frames_round_trip_and_chain() {
        let buf = frames(3);
        let mut chain = ChainCheck::genesis();
        let offsets: Vec<u64> = Frames::new(&buf, 1)
            .map(|f| {
                let f = f.unwrap();
                chain.check(&f).unwrap();
                f.decode().unwrap().offset.get()
            })
            .collect();
        assert_eq!(offsets, [1, 2, 3]);
    }

    #[test]
    fn a_flipped_byte_names_its_offset() {
        let mut buf = frames(3);
        let second = buf.len() / 3 + 70;
        buf[second] ^= 1;
        let results: Vec<_> = Frames::new(&buf, 1).collect();
        assert!(results[0].is_ok());
        assert!(
            matches!(results[1], Err(Error::Corrupt { offset: 2, .. })),
            "{results:?}"
        );
        assert_eq!(results.len(), 2, "nothing is served past a broken frame");
    }

    #[test]
    fn a_torn_tail_is_reported() {
        let buf = frames(2);
        let torn = &buf[..buf.len() - 5];
        let results: Vec<_> = Frames::new(torn, 1).collect();
        assert!(results[0].is_ok());
        let Err(Error::Corrupt { offset: 2, detail }) = &results[1] else {
            panic!()
        };
        assert!(detail.starts_with("torn frame"), "{detail}");
    }

    /// Raft's JSON carries a packed payload as a base64 string and an older binary's JSON
    /// payload as itself; each comes back as it went, to be stored in its own format.
    #[test]
    fn a_payload_travels_in_json_as_base64_or_as_the_json_it_was() {
        let entry = Entry {
            actor: Actor::system(),
            event: Event::FormatBarrier(FormatBarrier { min_format: 5 }),
        };
        let packed = Payload::pack(&entry).unwrap();
        let wire = serde_json::to_string(&packed).unwrap();
        assert!(wire.starts_with('"'), "{wire}");
        let back: Payload = serde_json::from_str(&wire).unwrap();
        assert!(matches!(&back, Payload::Packed(b) if b == packed.bytes()));
        assert_eq!(back.format(), FORMAT);
        assert_eq!(back.decode(1).unwrap(), entry);

        let json = serde_json::to_string(&entry).unwrap();
        let legacy: Payload = serde_json::from_str(&json).unwrap();
        assert_eq!(legacy.format(), JSON_FORMAT);
        assert_eq!(
            legacy.bytes(),
            json.as_bytes(),
            "stored as the older binary stored it"
        );
        assert_eq!(legacy.decode(1).unwrap(), entry);
        assert_eq!(serde_json::to_string(&legacy).unwrap(), json);

        let err = serde_json::from_str::<Payload>("\"not base64!\"").unwrap_err();
        assert!(err.to_string().contains("packed payload"), "{err}");
    }

    /// Whatever follows a whole entry is not an entry: refused, naming the offset.
    #[test]
    fn a_packed_payload_with_bytes_after_its_entry_is_refused() {
        let entry = Entry {
            actor: Actor::system(),
            event: Event::FormatBarrier(FormatBarrier { min_format: 5 }),
        };
        let mut bytes = Payload::pack(&entry).unwrap().bytes().to_vec();
        bytes.push(0xc0);
        let err = decode_payload(FORMAT, 7, &bytes).unwrap_err();
        assert!(
            matches!(&err, Error::Decode { offset: 7, source } if source.to_string() == "1 bytes after the entry"),
            "{err}"
        );
        let err = decode_payload(FORMAT, 7, &bytes[..bytes.len() - 3]).unwrap_err();
        assert!(matches!(err, Error::Decode { offset: 7, .. }), "{err}");
    }

    #[test]
    fn a_newer_format_is_refused() {
        let mut out = Vec::new();
        let header = Header {
            format: MAX_READ_FORMAT + 1,
            offset: 1,
            term: Term(1),
            at: Timestamp::UNIX_EPOCH,
            prev_hash: GENESIS,
        };
        write_frame(&mut out, &header, b"{\"whatever\":true}");
        let frame = Frames::new(&out, 1).next().unwrap().unwrap();
        let err = frame.decode().unwrap_err();
        assert!(matches!(
            err,
            Error::UnsupportedFormat {
                offset: 1,
                found,
                supported: MAX_READ_FORMAT,
            } if found == MAX_READ_FORMAT + 1
        ));
        assert!(err.to_string().contains("newer cairn"), "{err}");
    }

    #[test]
    fn a_relinked_chain_is_caught() {
        let buf = frames(2);
        let mut chain = ChainCheck::genesis();
        let mut it = Frames::new(&buf, 1);
        it.next().unwrap().unwrap();
        // Skipping the first record's hash: the second's prev_hash no longer matches.
        let second = it.next().unwrap().unwrap();
        assert!(matches!(
            chain.check(&second),
            Err(Error::ChainBroken { offset: 2 })
        ));
    }
}
