//! Deterministic CBOR (RFC 8949 §4.2.1): the only encoding lienthong signs, hashes and
//! accepts from the network.
//!
//! Encoding goes through ciborium; the result is checked against the deterministic rules
//! and, if a type's field order does not already produce sorted map keys, re-encoded through
//! a sorted [`ciborium::Value`]. Decoding first walks the raw bytes with [`check_canonical`]
//! (no allocation, declared lengths bounded by the input before anything is read), then
//! decodes, then re-encodes and compares, so that exactly one byte string stands for each
//! value and nothing the type would not write (unknown fields, explicit nulls) is accepted.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Deepest nesting of arrays and maps accepted.
pub const MAX_DEPTH: usize = 16;

/// Why bytes are not an acceptable deterministic CBOR encoding of a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("encoding is {len} bytes; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("input ends inside an item at byte {offset}")]
    Truncated { offset: usize },
    #[error("not deterministic CBOR at byte {offset}: {reason}")]
    NonCanonical { offset: usize, reason: &'static str },
    #[error("nesting deeper than {max} levels at byte {offset}")]
    TooDeep { offset: usize, max: usize },
    #[error("{extra} bytes after the end of the item")]
    TrailingBytes { extra: usize },
    #[error("unsupported CBOR at byte {offset}: {what}")]
    Unsupported { offset: usize, what: &'static str },
    #[error("well-formed CBOR but not a valid {type_name}: {detail}")]
    Schema {
        type_name: &'static str,
        detail: String,
    },
    #[error("cannot encode {type_name}: {detail}")]
    Encode {
        type_name: &'static str,
        detail: String,
    },
}

/// Encodes `value` as deterministic CBOR.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CborError> {
    let encode_err = |detail: String| CborError::Encode {
        type_name: std::any::type_name::<T>(),
        detail,
    };
    let mut out = Vec::with_capacity(256);
    ciborium::into_writer(value, &mut out).map_err(|e| encode_err(e.to_string()))?;
    if check_canonical(&out, usize::MAX).is_ok() {
        return Ok(out);
    }
    // Field order did not sort the map keys (or a map had unsorted keys): sort them.
    let mut tree = ciborium::Value::serialized(value).map_err(|e| encode_err(e.to_string()))?;
    sort_maps(&mut tree).map_err(encode_err)?;
    out.clear();
    ciborium::into_writer(&tree, &mut out).map_err(|e| encode_err(e.to_string()))?;
    check_canonical(&out, usize::MAX).map_err(|e| encode_err(e.to_string()))?;
    Ok(out)
}

/// Decodes `bytes` as a `T`, accepting only the one deterministic encoding of that value and
/// at most `max_len` bytes.
pub fn from_canonical<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
) -> Result<T, CborError> {
    check_canonical(bytes, max_len)?;
    let type_name = std::any::type_name::<T>();
    let value: T =
        ciborium::de::from_reader_with_recursion_limit(bytes, MAX_DEPTH + 1).map_err(|e| {
            CborError::Schema {
                type_name,
                detail: e.to_string(),
            }
        })?;
    let again = to_canonical(&value)?;
    if again != bytes {
        return Err(CborError::NonCanonical {
            offset: first_difference(&again, bytes),
            reason: "fields the type does not write (unknown field, explicit null or default)",
        });
    }
    Ok(value)
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

/// Checks that `bytes` is exactly one well-formed, deterministic CBOR item of at most
/// `max_len` bytes: shortest-form heads, definite lengths, map keys strictly increasing in
/// bytewise order, valid UTF-8 text, no tags, floats or `undefined`, nesting at most
/// [`MAX_DEPTH`]. Never allocates; declared lengths are checked against the input first.
pub fn check_canonical(bytes: &[u8], max_len: usize) -> Result<(), CborError> {
    if bytes.len() > max_len {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    match first_item_len(bytes)? {
        len if len == bytes.len() => Ok(()),
        len => Err(CborError::TrailingBytes {
            extra: bytes.len() - len,
        }),
    }
}

/// The length of the deterministic CBOR item at the start of `bytes` (checked as
/// [`check_canonical`] checks a whole input); what follows it is not looked at.
pub fn first_item_len(bytes: &[u8]) -> Result<usize, CborError> {
    let mut scanner = Scanner { bytes, pos: 0 };
    scanner.item(0)?;
    Ok(scanner.pos)
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Scanner<'_> {
    fn byte(&mut self) -> Result<u8, CborError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(CborError::Truncated { offset: self.pos })?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, len: u64) -> Result<&[u8], CborError> {
        let start = self.pos;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
            .filter(|&end| end <= self.bytes.len())
            .ok_or(CborError::Truncated { offset: start })?;
        self.pos = end;
        self.bytes
            .get(start..end)
            .ok_or(CborError::Truncated { offset: start })
    }

    /// Reads an item head; returns (major type, argument).
    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let offset = self.pos;
        let initial = self.byte()?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let non_canonical = |reason| CborError::NonCanonical { offset, reason };
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let width = 1usize << (info - 24);
                let raw = self.take(width as u64)?;
                let arg = raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                if major == 7 {
                    return match info {
                        24 => Err(CborError::Unsupported {
                            offset,
                            what: "simple values other than false, true and null",
                        }),
                        _ => Err(CborError::Unsupported {
                            offset,
                            what: "floating-point numbers",
                        }),
                    };
                }
                let shortest = match info {
                    24 => arg >= 24,
                    25 => arg > 0xff,
                    26 => arg > 0xffff,
                    _ => arg > 0xffff_ffff,
                };
                if !shortest {
                    return Err(non_canonical("integer or length not in its shortest form"));
                }
                arg
            }
            31 => return Err(non_canonical("indefinite length")),
            _ => {
                return Err(CborError::Unsupported {
                    offset,
                    what: "reserved additional information 28-30",
                });
            }
        };
        Ok((major, arg))
    }

    fn item(&mut self, depth: usize) -> Result<(), CborError> {
        let offset = self.pos;
        let (major, arg) = self.head()?;
        match major {
            0 | 1 => Ok(()),
            2 => self.take(arg).map(|_| ()),
            3 => {
                let text = self.take(arg)?;
                std::str::from_utf8(text)
                    .map(|_| ())
                    .map_err(|_| CborError::NonCanonical {
                        offset,
                        reason: "text is not valid UTF-8",
                    })
            }
            4 | 5 => {
                if depth >= MAX_DEPTH {
                    return Err(CborError::TooDeep {
                        offset,
                        max: MAX_DEPTH,
                    });
                }
                // Each element takes at least one byte: refuse counts the input cannot hold
                // before looping over them.
                let per_entry = if major == 5 { 2 } else { 1 };
                let remaining = (self.bytes.len() - self.pos) as u64;
                if arg
                    .checked_mul(per_entry)
                    .is_none_or(|need| need > remaining)
                {
                    return Err(CborError::Truncated { offset });
                }
                if major == 4 {
                    for _ in 0..arg {
                        self.item(depth + 1)?;
                    }
                    return Ok(());
                }
                let mut previous_key: Option<(usize, usize)> = None;
                for _ in 0..arg {
                    let key_start = self.pos;
                    self.item(depth + 1)?;
                    let key = (key_start, self.pos);
                    if let Some(prev) = previous_key {
                        let (a, b) = (self.bytes.get(prev.0..prev.1), self.bytes.get(key.0..key.1));
                        if a >= b {
                            return Err(CborError::NonCanonical {
                                offset: key_start,
                                reason: "map keys not in strictly increasing bytewise order (or repeated)",
                            });
                        }
                    }
                    previous_key = Some(key);
                    self.item(depth + 1)?;
                }
                Ok(())
            }
            6 => Err(CborError::Unsupported {
                offset,
                what: "tags",
            }),
            _ => match arg {
                20..=22 => Ok(()),
                _ => Err(CborError::Unsupported {
                    offset,
                    what: "simple values other than false, true and null",
                }),
            },
        }
    }
}

fn sort_maps(value: &mut ciborium::Value) -> Result<(), String> {
    use ciborium::Value;
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(sort_maps),
        Value::Map(entries) => {
            let mut keyed = Vec::with_capacity(entries.len());
            for (mut k, mut v) in entries.drain(..) {
                sort_maps(&mut k)?;
                sort_maps(&mut v)?;
                let mut encoded = Vec::new();
                ciborium::into_writer(&k, &mut encoded).map_err(|e| e.to_string())?;
                keyed.push((encoded, k, v));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            if keyed.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
                return Err("a map has the same key twice".into());
            }
            entries.extend(keyed.into_iter().map(|(_, k, v)| (k, v)));
            Ok(())
        }
        Value::Tag(..) => Err("tags are not used".into()),
        Value::Float(_) => Err("floating-point numbers are not used".into()),
        _ => Ok(()),
    }
}

/// A fixed 32-byte value (hash or public key) encoded as a CBOR byte string.
pub mod bytes32 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let bytes: serde_bytes::ByteBuf = serde::Deserialize::deserialize(d)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"32 bytes"))
    }
}

/// A fixed 64-byte value (signature) encoded as a CBOR byte string.
pub mod bytes64 {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let bytes: serde_bytes::ByteBuf = serde::Deserialize::deserialize(d)?;
        <[u8; 64]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"64 bytes"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Unsorted {
        zeta: u64,
        a: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        opt: Option<u8>,
    }

    #[test]
    fn sorts_keys_and_round_trips() {
        let v = Unsorted {
            zeta: 500,
            a: "x".into(),
            opt: None,
        };
        let bytes = to_canonical(&v).unwrap();
        // {"a": "x", "zeta": 500}: "a" sorts first (shorter encoding).
        assert_eq!(
            bytes,
            [
                0xa2, 0x61, b'a', 0x61, b'x', 0x64, b'z', b'e', b't', b'a', 0x19, 0x01, 0xf4
            ]
        );
        assert_eq!(from_canonical::<Unsorted>(&bytes, 100).unwrap(), v);
    }

    #[test]
    fn rejects_each_kind_of_non_canonical_input() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x18, 0x05], "shortest"),         // 5 written in two bytes
            (&[0x9f, 0x01, 0xff], "indefinite"), // indefinite array
            (&[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02], "increasing"), // unsorted keys
            (&[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02], "increasing"), // repeated key
            (&[0x62, 0xff, 0xfe], "UTF-8"),
        ];
        for (bytes, why) in cases {
            let err = check_canonical(bytes, 100).unwrap_err().to_string();
            assert!(err.contains(why), "{bytes:02x?}: {err}");
        }
        assert!(matches!(
            check_canonical(&[0xc1, 0x00], 100),
            Err(CborError::Unsupported { .. })
        ));
        assert!(matches!(
            check_canonical(&[0xf9, 0x00, 0x00], 100),
            Err(CborError::Unsupported { .. })
        ));
        assert!(matches!(
            check_canonical(&[0x01, 0x02], 100),
            Err(CborError::TrailingBytes { extra: 1 })
        ));
        assert!(matches!(
            check_canonical(&[0x01; 10], 5),
            Err(CborError::TooLarge { len: 10, max: 5 })
        ));
    }

    #[test]
    fn huge_declared_lengths_are_refused_before_reading() {
        // A byte string claiming 2^63 bytes and an array claiming 2^32 items.
        let bytes = [0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            check_canonical(&bytes, 100),
            Err(CborError::Truncated { .. })
        ));
        let array = [0x9b, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            check_canonical(&array, 100),
            Err(CborError::Truncated { .. })
        ));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = vec![0x81; MAX_DEPTH + 1];
        deep.push(0x00);
        assert!(matches!(
            check_canonical(&deep, 100),
            Err(CborError::TooDeep { .. })
        ));
        let mut ok = vec![0x81; MAX_DEPTH];
        ok.push(0x00);
        check_canonical(&ok, 100).unwrap();
    }

    #[test]
    fn unknown_fields_and_explicit_nulls_are_refused() {
        // {"a":"x","opt":null,"zeta":1}
        let with_null = [
            0xa3, 0x61, b'a', 0x61, b'x', 0x63, b'o', b'p', b't', 0xf6, 0x64, b'z', b'e', b't',
            b'a', 0x01,
        ];
        assert!(matches!(
            from_canonical::<Unsorted>(&with_null, 100),
            Err(CborError::NonCanonical { .. })
        ));
        // {"a":"x","b":1,"zeta":1}
        let unknown = [
            0xa3, 0x61, b'a', 0x61, b'x', 0x61, b'b', 0x01, 0x64, b'z', b'e', b't', b'a', 0x01,
        ];
        assert!(matches!(
            from_canonical::<Unsorted>(&unknown, 100),
            Err(CborError::Schema { .. })
        ));
    }
}
