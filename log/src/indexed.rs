//! The packed encoding of the log's payloads (format 5 on) and of a checkpoint's body:
//! MessagePack in which a struct is an array of its fields in order when none was left out, or
//! else a map from each field's *index* to its value; an enum variant is its index.
//!
//! Field names were half of a checkpoint's bytes and about half of its decode time; a JSON
//! payload was 4.6 times as large and twice as slow to decode. Plain
//! positional MessagePack (rmp's default) drops them but cannot be read back here: the event
//! vocabulary leaves out empty optional fields (`skip_serializing_if`), which shifts every
//! later field of a tuple. Indices keep each value's place whatever was left out: serde tells
//! a serializer which fields it skipped ([`SerializeStruct::skip_field`]), and derived
//! deserializers accept a field's or a variant's index where they accept its name. A struct
//! with nothing left out (most of the state's own: history entries, runs, versions) needs no
//! keys at all, and derived deserializers read a struct from an array too, a key's decode and
//! dispatch fewer per field. So `rmp_serde::from_slice` reads this back as it is: only the
//! writing side is ours.
//!
//! Deterministic: the bytes depend only on the value (maps are ordered maps in the state).
//!
//! Positions are the contract: a field or variant is only ever added at the end of its struct
//! or enum (a field added later is `#[serde(default)]`, so older, shorter arrays still read),
//! never moved or removed. `log/tests/vocabulary.rs` and the golden logs fail if one is.

use std::fmt::Display;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
};

/// `value` in this encoding.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut encoder = Encoder {
        out: Vec::new(),
        starts: Vec::new(),
    };
    value.serialize(&mut encoder)?;
    Ok(encoder.out)
}

/// A value this encoding cannot hold (a sequence of unknown length, a 128-bit integer).
#[derive(Debug)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Writing to a `Vec` cannot fail; rmp's signatures still return results.
fn done<T, E: Display>(result: Result<T, E>) -> Result<(), Error> {
    result.map(|_| ()).map_err(ser::Error::custom)
}

fn length(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error(format!("{len} items are too many for MessagePack")))
}

struct Encoder {
    out: Vec<u8>,
    /// Where each field written so far without a key begins, for the structs being written
    /// (each holds its own part, from its `Compound::fields` on).
    starts: Vec<usize>,
}

impl Encoder {
    fn index(&mut self, index: u32) -> Result<(), Error> {
        done(rmp::encode::write_uint(&mut self.out, u64::from(index)))
    }

    /// A variant with data: a map of one entry, its index to the data.
    fn variant(&mut self, index: u32) -> Result<(), Error> {
        done(rmp::encode::write_map_len(&mut self.out, 1))?;
        self.index(index)
    }
}

/// A struct, sequence, tuple or map being written.
struct Compound<'a> {
    encoder: &'a mut Encoder,
    /// A struct's: the index of its next field, skipped ones included.
    next: u32,
    /// A struct's: where its header is, while no field has been left out (it is written as an
    /// array); `None` once one has been (a map keyed by index) and for other compounds.
    positional: Option<usize>,
    /// A struct's: where its fields' starts begin in `Encoder::starts`.
    fields: usize,
}

impl<'a> Compound<'a> {
    fn new(encoder: &'a mut Encoder) -> Self {
        Self {
            encoder,
            next: 0,
            positional: None,
            fields: 0,
        }
    }

    fn structure(encoder: &'a mut Encoder, len: usize) -> Result<Self, Error> {
        let header = encoder.out.len();
        done(rmp::encode::write_array_len(&mut encoder.out, length(len)?))?;
        let fields = encoder.starts.len();
        Ok(Self {
            encoder,
            next: 0,
            positional: Some(header),
            fields,
        })
    }

    fn field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if self.positional.is_some() {
            self.encoder.starts.push(self.encoder.out.len());
        } else {
            self.encoder.index(self.next)?;
        }
        self.next += 1;
        value.serialize(&mut *self.encoder)
    }

    /// A field left out: the struct becomes a map, and each field already written gets its
    /// index in front of it (they are the first ones, so their index is their position).
    fn skip(&mut self) -> Result<(), Error> {
        self.next += 1;
        let Some(header) = self.positional.take() else {
            return Ok(());
        };
        let out = &mut self.encoder.out;
        // Array and map headers of a length are the same size; only the marker differs.
        out[header] = match out[header] {
            fix @ 0x90..=0x9f => fix - 0x10,
            0xdc => 0xde,
            _ => 0xdf, // from 0xdd, an array of 32-bit length
        };
        let starts = self.encoder.starts.split_off(self.fields);
        if let Some(&first) = starts.first() {
            let written = out.split_off(first);
            for (index, (&start, end)) in starts
                .iter()
                .zip(
                    starts
                        .iter()
                        .skip(1)
                        .copied()
                        .chain([first + written.len()]),
                )
                .enumerate()
            {
                done(rmp::encode::write_uint(out, index as u64))?;
                out.extend_from_slice(&written[start - first..end - first]);
            }
        }
        Ok(())
    }

    fn end_structure(self) {
        self.encoder.starts.truncate(self.fields);
    }
}

/// Narrower integers, written as the widest of their sign (MessagePack picks the shortest form).
macro_rules! widened {
    ($($method:ident($narrow:ty)),* => $wide:ident($to:ty)) => {$(
        fn $method(self, v: $narrow) -> Result<(), Error> {
            self.$wide(<$to>::from(v))
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Encoder {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn is_human_readable(&self) -> bool {
        false
    }

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        done(rmp::encode::write_bool(&mut self.out, v))
    }

    widened!(
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32) => serialize_i64(i64)
    );
    widened!(
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32) => serialize_u64(u64)
    );

    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        done(rmp::encode::write_sint(&mut self.out, v))
    }

    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        done(rmp::encode::write_uint(&mut self.out, v))
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        done(rmp::encode::write_f32(&mut self.out, v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        done(rmp::encode::write_f64(&mut self.out, v))
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        done(rmp::encode::write_str(&mut self.out, v))
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        done(rmp::encode::write_bin(&mut self.out, v))
    }

    fn serialize_none(self) -> Result<(), Error> {
        done(rmp::encode::write_nil(&mut self.out))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), Error> {
        self.index(index)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant(index)?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a>, Error> {
        let len = len.ok_or_else(|| Error("a sequence of unknown length".into()))?;
        self.serialize_tuple(len)
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        done(rmp::encode::write_array_len(&mut self.out, length(len)?))?;
        Ok(Compound::new(self))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.serialize_tuple(len)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.variant(index)?;
        self.serialize_tuple(len)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a>, Error> {
        let len = len.ok_or_else(|| Error("a map of unknown length".into()))?;
        done(rmp::encode::write_map_len(&mut self.out, length(len)?))?;
        Ok(Compound::new(self))
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        // `len` counts the fields written, not the ones skipped.
        Compound::structure(self, len)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.variant(index)?;
        Compound::structure(self, len)
    }
}

/// Elements of a sequence or tuple, in order: the same for each of serde's four kinds.
macro_rules! elements {
    ($($kind:ident::$method:ident),*) => {$(
        impl $kind for Compound<'_> {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                value.serialize(&mut *self.encoder)
            }

            fn end(self) -> Result<(), Error> {
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        key.serialize(&mut *self.encoder)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.encoder)
    }

    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

/// Fields in order, or by index once one was skipped: the same for structs and struct
/// variants.
macro_rules! fields {
    ($($kind:ident),*) => {$(
        impl $kind for Compound<'_> {
            type Ok = ();
            type Error = Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(value)
            }

            fn skip_field(&mut self, _key: &'static str) -> Result<(), Error> {
                self.skip()
            }

            fn end(self) -> Result<(), Error> {
                self.end_structure();
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Unit,
        Newtype(u64),
        Tuple(i32, String),
        Struct {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            a: Option<u8>,
            b: f64,
        },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Outer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first: Option<String>,
        second: Option<Kind>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        third: Vec<Kind>,
        fourth: BTreeMap<u64, (bool, char)>,
        fifth: i64,
    }

    /// Every shape, with fields left out at the start, in the middle and not at all, reads
    /// back through rmp_serde exactly; names appear nowhere in the bytes.
    #[test]
    fn what_is_written_reads_back_with_rmp_serde_whatever_was_left_out() {
        let values = [
            Outer {
                first: None,
                second: Some(Kind::Unit),
                third: vec![],
                fourth: BTreeMap::from([(7, (true, 'é'))]),
                fifth: -3,
            },
            Outer {
                first: Some("x".into()),
                second: None,
                third: vec![
                    Kind::Newtype(u64::MAX),
                    Kind::Tuple(-1, "t".into()),
                    Kind::Struct { a: None, b: 1.5 },
                    Kind::Struct {
                        a: Some(2),
                        b: -0.0,
                    },
                ],
                fourth: BTreeMap::new(),
                fifth: i64::MIN,
            },
            // Left out after two fields were written, one of them a struct without keys.
            Outer {
                first: Some("y".into()),
                second: Some(Kind::Struct { a: Some(1), b: 2.0 }),
                third: vec![],
                fourth: BTreeMap::from([(1, (false, 'x')), (2, (true, 'y'))]),
                fifth: 0,
            },
        ];
        for value in values {
            let bytes = super::to_vec(&value).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("fourth") && !text.contains("Newtype"),
                "{text}"
            );
            let back: Outer = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(back, value);
        }
    }

    /// A struct with every field written is an array of them; one with a field left out is a
    /// map from index to value, the fields before it included.
    #[test]
    fn a_struct_is_an_array_unless_a_field_was_left_out() {
        let whole = Kind::Struct { a: Some(2), b: 0.5 };
        let fewer = Kind::Struct { a: None, b: 0.5 };
        let half = [0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0];
        // A variant with data: a map of one entry, its index (3) to the data.
        let mut array = vec![0x81, 3, 0x92, 2];
        array.extend(half);
        assert_eq!(super::to_vec(&whole).unwrap(), array);
        let mut map = vec![0x81, 3, 0x81, 1];
        map.extend(half);
        assert_eq!(super::to_vec(&fewer).unwrap(), map);

        #[derive(Serialize)]
        struct Late {
            a: u8,
            b: u8,
            #[serde(skip_serializing_if = "Option::is_none")]
            c: Option<u8>,
            d: u8,
        }
        let late = Late {
            a: 10,
            b: 11,
            c: None,
            d: 13,
        };
        assert_eq!(super::to_vec(&late).unwrap(), [0x83, 0, 10, 1, 11, 3, 13]);
    }
}
