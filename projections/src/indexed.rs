//! The encoding of a checkpoint's body: MessagePack in which a struct is a map from each
//! field's *index* to its value, and an enum variant is its index.
//!
//! Field names were half of a checkpoint's bytes and about half of its decode time. Plain
//! positional MessagePack (rmp's default) drops them but cannot be read back here: the event
//! vocabulary leaves out empty optional fields (`skip_serializing_if`), which shifts every
//! later field of a tuple. Indices keep each value's place whatever was left out: serde tells
//! a serializer which fields it skipped ([`SerializeStruct::skip_field`]), and derived
//! deserializers accept a field's or a variant's index where they accept its name, so
//! `rmp_serde::from_slice` reads this back as it is. Only the writing side is ours.
//!
//! Deterministic: the bytes depend only on the value (maps are ordered maps in the state).

use std::fmt::Display;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
};

/// `value` in this encoding.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut encoder = Encoder { out: Vec::new() };
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

/// A struct, sequence, tuple or map being written; `next` is the index of a struct's next
/// field, skipped ones included.
struct Compound<'a> {
    encoder: &'a mut Encoder,
    next: u32,
}

impl<'a> Compound<'a> {
    fn new(encoder: &'a mut Encoder) -> Self {
        Self { encoder, next: 0 }
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
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        self.variant(index)?;
        self.serialize_map(Some(len))
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

/// Fields by index, skipped ones counted: the same for structs and struct variants.
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
                self.encoder.index(self.next)?;
                self.next += 1;
                value.serialize(&mut *self.encoder)
            }

            fn skip_field(&mut self, _key: &'static str) -> Result<(), Error> {
                self.next += 1;
                Ok(())
            }

            fn end(self) -> Result<(), Error> {
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
}
