//! Content addresses: the SHA-256 of a signed envelope's exact bytes, and its printable
//! CIDv1 form used in the API, logs and CLI.
//!
//! The printable form is a CIDv1 (multibase `b`, lowercase RFC 4648 base32 without
//! padding) of multicodec `cbor` (0x51) and a sha2-256 multihash: `bafire…`, 59 characters.
//! Only that exact spelling parses, so every id has one printable form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// CIDv1 prefix: version 1, codec cbor (0x51), multihash sha2-256 (0x12) of 32 bytes.
const CID_PREFIX: [u8; 4] = [0x01, 0x51, 0x12, 0x20];

/// Why a printable content id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentIdError {
    #[error("content id must start with the multibase prefix `b` (base32 CIDv1)")]
    Multibase,
    #[error("content id is not lowercase base32 without padding")]
    Base32,
    #[error(
        "content id is not a CIDv1 of a cbor sha2-256 hash (expected 36 bytes starting 01 51 12 20)"
    )]
    Shape,
}

/// The SHA-256 of a signed envelope's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The content id of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the printable CIDv1 form.
    pub fn parse(s: &str) -> Result<Self, ContentIdError> {
        let rest = s.strip_prefix('b').ok_or(ContentIdError::Multibase)?;
        if rest.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(ContentIdError::Base32);
        }
        let raw = data_encoding::BASE32_NOPAD
            .decode(rest.to_ascii_uppercase().as_bytes())
            .map_err(|_| ContentIdError::Base32)?;
        let (prefix, digest) = raw
            .split_at_checked(CID_PREFIX.len())
            .ok_or(ContentIdError::Shape)?;
        if prefix != CID_PREFIX {
            return Err(ContentIdError::Shape);
        }
        let digest: [u8; 32] = digest.try_into().map_err(|_| ContentIdError::Shape)?;
        let id = Self(digest);
        // Refuse spellings that decode but are not the canonical one (non-zero trailing bits).
        if id.to_string() != s {
            return Err(ContentIdError::Base32);
        }
        Ok(id)
    }

    /// Lowercase hex of the digest (for file names and keys).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = [0u8; 36];
        let (prefix, digest) = raw.split_at_mut(CID_PREFIX.len());
        prefix.copy_from_slice(&CID_PREFIX);
        digest.copy_from_slice(&self.0);
        write!(
            f,
            "b{}",
            data_encoding::BASE32_NOPAD
                .encode(&raw)
                .to_ascii_lowercase()
        )
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentId({self})")
    }
}

impl FromStr for ContentId {
    type Err = ContentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ContentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            crate::cbor::bytes32::serialize(&self.0, s)
        }
    }
}

impl<'de> Deserialize<'de> for ContentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Self::parse(&s).map_err(serde::de::Error::custom)
        } else {
            crate::cbor::bytes32::deserialize(d).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn printable_form_is_a_cbor_cidv1() {
        let id = ContentId::of(b"hello");
        let s = id.to_string();
        assert!(s.starts_with("bafire"), "{s}");
        assert_eq!(s.len(), 59);
        assert_eq!(ContentId::parse(&s).unwrap(), id);
        assert_eq!(
            ContentId::parse(&s.to_ascii_uppercase()),
            Err(ContentIdError::Multibase)
        );
        assert_eq!(ContentId::parse(&s[1..]), Err(ContentIdError::Multibase));
        assert_eq!(ContentId::parse("bafire"), Err(ContentIdError::Shape));
        assert!(ContentId::parse(&format!("b{}", &s[2..])).is_err());
        assert_eq!(ContentId::parse("b!!"), Err(ContentIdError::Base32));
    }

    proptest! {
        #[test]
        fn round_trips(digest in any::<[u8; 32]>()) {
            let id = ContentId(digest);
            prop_assert_eq!(ContentId::parse(&id.to_string()).unwrap(), id);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = ContentId::parse(&s);
        }
    }
}
