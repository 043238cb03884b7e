//! The signed envelope (DESIGN §4): the small, gossiped, per-sender hash-chained record that
//! announces a document, status, revocation, update, replacement or roster epoch.
//!
//! Wire form: the deterministic CBOR array `[body, signature]` (the **header**), or
//! `[body, signature, inline]` when a small sealed payload travels with it. The signature
//! covers `SignatureDomain::Envelope.prefix() || body bytes`, where the body bytes are the
//! exact bytes inside the array, so verification needs no re-encoding. The body commits to
//! an inline payload by its SHA-256 and size, so the header alone is verifiable: that is
//! what the audit ledger stores (no payloads). The content id is the SHA-256 of the
//! header `[body, signature]`, whether or not the payload travels with it. [`SignedEnvelope::decode`] checks shape and limits; the
//! signature needs the sender's key from the roster, so it is checked by
//! [`SignedEnvelope::verify`], which every receiver calls before acting.
//!
//! The body's structs declare their fields in canonical key order (shorter names first),
//! so the first encoding is already canonical and signing never rebuilds and sorts it.

use serde::{Deserialize, Serialize};

use crate::agency::AgencyId;
use crate::cbor::{self, CborError};
use crate::content_id::ContentId;
use crate::keys::{KeyError, Signature, SignatureDomain, SigningKey, VerifyingKey};
use crate::status::StatusCode;

/// The envelope format version this code writes and accepts.
pub const ENVELOPE_VERSION: u8 = 1;
/// Largest encoded envelope, in bytes.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;
/// Most recipients one envelope may list.
pub const MAX_RECIPIENTS: usize = 1024;
/// Longest free-text routing field (document type, due date), in bytes.
pub const MAX_ROUTING_TEXT: usize = 64;
/// Largest inline payload (sealed small documents, status details), in bytes.
pub const MAX_INLINE_PAYLOAD: usize = 48 * 1024;

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A new document (business type 0).
    Document,
    /// A processing status about an earlier document.
    Status,
    /// A document that revokes an earlier one (business type 1).
    Revoke,
    /// A document that updates an earlier one (business type 2).
    Update,
    /// A document that replaces an earlier one (business type 3).
    Replace,
    /// A new roster epoch, announced by a central node's agency identity.
    Roster,
}

impl Kind {
    /// Kinds that carry a document payload.
    pub fn is_document(self) -> bool {
        matches!(
            self,
            Self::Document | Self::Revoke | Self::Update | Self::Replace
        )
    }
}

/// The clear routing fields: visible to relays and the ledger, like today's hub.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Due date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// The earlier document this one answers (ResponseFor), revokes, updates or replaces, or
    /// that a status is about.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub refers_to: Option<ContentId>,
    /// edXML DocumentType code (e.g. `1` for a decision), for documents.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub doc_type: Option<String>,
    /// The status code, for status envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusCode>,
    /// Priority 0–4 (edXML OtherInfo/Priority).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u8,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// Where the content is. Content is always sealed for the recipients (see `seal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Payload {
    /// No content (statuses without a reason).
    None,
    /// A small sealed payload carried beside the body ([`InlinePayload`]): the SHA-256 and
    /// size of its canonical bytes.
    Inline {
        size: u32,
        #[serde(with = "crate::cbor::bytes32")]
        digest: [u8; 32],
    },
    /// A sealed payload fetched by hash: the manifest's id (SHA-256 of its canonical bytes)
    /// and the total ciphertext size (manifest and chunks), for quotas before fetching.
    External {
        size: u64,
        #[serde(with = "crate::cbor::bytes32")]
        manifest: [u8; 32],
    },
    /// A signed roster epoch (kind `roster` only), verified against the root keys.
    Roster(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// The signed part of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeBody {
    /// Format version, [`ENVELOPE_VERSION`].
    pub v: u8,
    /// Recipients, sorted and unique (empty only for roster envelopes).
    pub to: Vec<AgencyId>,
    /// Per-sender sequence number, from 1, without gaps.
    pub seq: u64,
    /// The signing agency.
    pub from: AgencyId,
    /// What the envelope carries.
    pub kind: Kind,
    /// The content id of the sender's envelope `seq - 1` (absent for `seq == 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<ContentId>,
    /// The sealed content.
    pub payload: Payload,
    /// Clear routing fields.
    pub routing: Routing,
    /// Creation time, milliseconds since the Unix epoch, by the sender's clock.
    pub created_ms: u64,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Encoding(#[from] CborError),
    #[error("envelope version {found} is not supported (this node speaks {ENVELOPE_VERSION})")]
    UnknownVersion { found: u64 },
    #[error("envelope is not the array [body, signature]")]
    Shape,
    #[error("envelope field `{field}` is invalid: {problem}")]
    Field {
        field: &'static str,
        problem: String,
    },
    #[error("envelope signature: {0}")]
    Signature(#[from] KeyError),
}

fn field(field: &'static str, problem: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Field {
        field,
        problem: problem.into(),
    }
}

impl EnvelopeBody {
    /// Checks every field's limits and the consistency between kind, routing and payload.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        if self.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnknownVersion {
                found: u64::from(self.v),
            });
        }
        if self.to.len() > MAX_RECIPIENTS {
            return Err(field(
                "to",
                format!(
                    "{} recipients; the limit is {MAX_RECIPIENTS}",
                    self.to.len()
                ),
            ));
        }
        if self.to.is_empty() && self.kind != Kind::Roster {
            return Err(field("to", "no recipients"));
        }
        if self.to.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
            return Err(field("to", "recipients must be sorted and unique"));
        }
        if self.to.contains(&self.from) {
            return Err(field("to", "an agency cannot send to itself"));
        }
        match (self.seq, &self.prev) {
            (0, _) => return Err(field("seq", "sequence numbers start at 1")),
            (1, Some(_)) => {
                return Err(field(
                    "prev",
                    "the first envelope (seq 1) has no previous envelope",
                ));
            }
            (2.., None) => return Err(field("prev", "missing for seq > 1")),
            _ => {}
        }
        let r = &self.routing;
        for (name, text) in [("routing.type", &r.doc_type), ("routing.due", &r.due)] {
            if let Some(text) = text
                && (text.is_empty() || text.len() > MAX_ROUTING_TEXT)
            {
                return Err(field(
                    name,
                    format!("must be 1 to {MAX_ROUTING_TEXT} bytes"),
                ));
            }
        }
        if r.priority > 4 {
            return Err(field(
                "routing.priority",
                format!("{} is above the highest priority 4", r.priority),
            ));
        }
        if let Some(due) = &r.due
            && !is_iso_date(due)
        {
            return Err(field(
                "routing.due",
                format!("{due:?} is not a date YYYY-MM-DD"),
            ));
        }
        match self.kind {
            Kind::Status => {
                if r.status.is_none() || r.refers_to.is_none() {
                    return Err(field(
                        "routing",
                        "a status names its code and the document it is about",
                    ));
                }
                if !matches!(self.payload, Payload::None | Payload::Inline { .. }) {
                    return Err(field(
                        "payload",
                        "a status carries at most an inline sealed detail",
                    ));
                }
            }
            kind => {
                if r.status.is_some() {
                    return Err(field(
                        "routing.status",
                        "only status envelopes carry a status code",
                    ));
                }
                if matches!(kind, Kind::Revoke | Kind::Update | Kind::Replace)
                    && r.refers_to.is_none()
                {
                    return Err(field(
                        "routing.ref",
                        "revoke, update and replace name the earlier document",
                    ));
                }
                let payload_fits = match (kind, &self.payload) {
                    (Kind::Roster, Payload::Roster(bytes)) => !bytes.is_empty(),
                    (Kind::Roster, _) => false,
                    (_, Payload::Inline { .. } | Payload::External { .. }) => true,
                    _ => false,
                };
                if !payload_fits {
                    return Err(field(
                        "payload",
                        format!("does not fit an envelope of kind {kind:?}"),
                    ));
                }
            }
        }
        if let Payload::Inline { size, .. } = &self.payload
            && *size as usize > MAX_INLINE_PAYLOAD
        {
            return Err(field(
                "payload",
                format!("inline payload above {MAX_INLINE_PAYLOAD} bytes"),
            ));
        }
        Ok(())
    }
}

fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|d| d.parse::<u32>().ok()).unwrap_or(0);
    b.len() == 10
        && digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
}

/// A small sealed payload that travels beside an envelope's body: a one-chunk payload's
/// manifest (canonical bytes) and its ciphertext chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlinePayload {
    #[serde(with = "serde_bytes")]
    pub chunk: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
}

impl InlinePayload {
    /// Its canonical bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        Ok(cbor::to_canonical(self)?)
    }

    /// Decodes canonical bytes of at most [`MAX_INLINE_PAYLOAD`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(cbor::from_canonical(bytes, MAX_INLINE_PAYLOAD)?)
    }
}

/// A decoded envelope together with its exact bytes and content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEnvelope {
    body: EnvelopeBody,
    signature: Signature,
    /// The wire bytes: the header, then the inline payload if any.
    bytes: Vec<u8>,
    /// End of the signature within `bytes` (the header is `0x82 || bytes[1..header_end]`).
    header_end: usize,
    id: ContentId,
}

/// Array heads of `[body, signature]` and `[body, signature, inline]`.
const HEADER_HEAD: u8 = 0x82;
const WITH_INLINE_HEAD: u8 = 0x83;
/// The signature's byte-string head (2 bytes) and 64 bytes.
const SIGNATURE_LEN: usize = 2 + 64;

fn header_id(after_head: &[u8]) -> ContentId {
    use sha2::{Digest, Sha256};
    ContentId(
        Sha256::new()
            .chain_update([HEADER_HEAD])
            .chain_update(after_head)
            .finalize()
            .into(),
    )
}

impl SignedEnvelope {
    /// Validates and signs `body` (whose payload must not be `Inline`: see
    /// [`Self::sign_inline`]).
    pub fn sign(body: EnvelopeBody, key: &SigningKey) -> Result<Self, EnvelopeError> {
        if matches!(body.payload, Payload::Inline { .. }) {
            return Err(field(
                "payload",
                "inline payload bytes missing (use sign_inline)",
            ));
        }
        Self::sign_parts(body, None, key)
    }

    /// Signs `body` with `inline` travelling beside it; the body's payload is set to the
    /// inline payload's digest and size.
    pub fn sign_inline(
        mut body: EnvelopeBody,
        inline: &InlinePayload,
        key: &SigningKey,
    ) -> Result<Self, EnvelopeError> {
        use sha2::{Digest, Sha256};
        let blob = inline.to_bytes()?;
        let size =
            u32::try_from(blob.len()).map_err(|_| field("payload", "inline payload too large"))?;
        body.payload = Payload::Inline {
            digest: Sha256::digest(&blob).into(),
            size,
        };
        Self::sign_parts(body, Some(blob), key)
    }

    fn sign_parts(
        body: EnvelopeBody,
        inline: Option<Vec<u8>>,
        key: &SigningKey,
    ) -> Result<Self, EnvelopeError> {
        body.validate()?;
        let body_bytes = cbor::to_canonical(&body)?;
        let signature = key.sign(SignatureDomain::Envelope, &body_bytes);
        let blob_len = inline.as_ref().map_or(0, |b| b.len() + 9);
        let mut bytes = Vec::with_capacity(1 + body_bytes.len() + SIGNATURE_LEN + blob_len);
        bytes.push(if inline.is_some() {
            WITH_INLINE_HEAD
        } else {
            HEADER_HEAD
        });
        bytes.extend_from_slice(&body_bytes);
        bytes.extend_from_slice(&[0x58, 0x40]);
        bytes.extend_from_slice(&signature.0);
        let header_end = bytes.len();
        if let Some(blob) = inline {
            bytes.extend_from_slice(&bytestring_head(blob.len()));
            bytes.extend_from_slice(&blob);
        }
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(CborError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            }
            .into());
        }
        let id = header_id(bytes.get(1..header_end).unwrap_or_default());
        Ok(Self {
            body,
            signature,
            bytes,
            header_end,
            id,
        })
    }

    /// Decodes untrusted bytes: deterministic CBOR, at most [`MAX_ENVELOPE_LEN`], a known
    /// version, valid fields, and an inline payload exactly when the body commits to one.
    /// Does not check the signature (see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::decode_inner(bytes, false)
    }

    /// Decodes a header `[body, signature]` as the audit ledger keeps it: like
    /// [`Self::decode`], but an inline payload the body commits to is not required (and not
    /// accepted). The signature and content id are those of the full envelope.
    pub fn decode_header(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::decode_inner(bytes, true)
    }

    fn decode_inner(bytes: &[u8], header_only: bool) -> Result<Self, EnvelopeError> {
        cbor::check_canonical(bytes, MAX_ENVELOPE_LEN)?;
        let (&head, rest) = bytes.split_first().ok_or(EnvelopeError::Shape)?;
        if head != HEADER_HEAD && (head != WITH_INLINE_HEAD || header_only) {
            return Err(EnvelopeError::Shape);
        }
        let body_len = cbor::first_item_len(rest).map_err(|_| EnvelopeError::Shape)?;
        let (body_bytes, after_body) = rest.split_at(body_len);
        let (sig_item, inline_item) = after_body
            .split_at_checked(SIGNATURE_LEN)
            .ok_or(EnvelopeError::Shape)?;
        let (sig_head, sig) = sig_item.split_at(2);
        if sig_head != [0x58, 0x40] {
            return Err(EnvelopeError::Shape);
        }
        let signature = Signature(sig.try_into().map_err(|_| EnvelopeError::Shape)?);
        let body: EnvelopeBody = match cbor::from_canonical(body_bytes, MAX_ENVELOPE_LEN) {
            Ok(body) => body,
            Err(e) => {
                return Err(version_of(body_bytes)
                    .map_or(e.into(), |found| EnvelopeError::UnknownVersion { found }));
            }
        };
        body.validate()?;
        match (&body.payload, head) {
            (Payload::Inline { digest, size }, WITH_INLINE_HEAD) => {
                use sha2::{Digest, Sha256};
                let blob = inline_item
                    .get(bytestring_head(*size as usize).len()..)
                    .unwrap_or_default();
                let expected = [bytestring_head(*size as usize).as_slice(), blob].concat();
                if expected != inline_item || blob.len() != *size as usize {
                    return Err(field(
                        "payload",
                        "inline payload size differs from the signed size",
                    ));
                }
                if Sha256::digest(blob).as_slice() != digest {
                    return Err(field(
                        "payload",
                        "inline payload digest differs from the signed digest",
                    ));
                }
                InlinePayload::decode(blob)?;
            }
            (Payload::Inline { .. }, _) if !header_only => {
                return Err(field("payload", "inline payload bytes missing"));
            }
            (_, WITH_INLINE_HEAD) => {
                return Err(field(
                    "payload",
                    "inline bytes beside a body that commits to none",
                ));
            }
            _ => {}
        }
        let header_end = 1 + body_len + SIGNATURE_LEN;
        let id = header_id(bytes.get(1..header_end).unwrap_or_default());
        Ok(Self {
            body,
            signature,
            bytes: bytes.to_vec(),
            header_end,
            id,
        })
    }

    /// Checks the signature with the sender's key (from the roster in force).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), EnvelopeError> {
        Ok(key.verify(
            SignatureDomain::Envelope,
            self.signed_body(),
            &self.signature,
        )?)
    }

    /// The exact body bytes the signature covers (without the domain prefix).
    pub fn signed_body(&self) -> &[u8] {
        let end = self.header_end.saturating_sub(SIGNATURE_LEN);
        self.bytes.get(1..end).unwrap_or_default()
    }

    /// The header `[body, signature]`: what the audit ledger stores and the content id
    /// hashes.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut header = Vec::with_capacity(self.header_end);
        header.push(HEADER_HEAD);
        header.extend_from_slice(self.bytes.get(1..self.header_end).unwrap_or_default());
        header
    }

    /// The inline payload's canonical bytes, if one travels with this envelope.
    pub fn inline_bytes(&self) -> Option<&[u8]> {
        let Payload::Inline { size, .. } = self.body.payload else {
            return None;
        };
        let start = self.header_end + bytestring_head(size as usize).len();
        self.bytes.get(start..)
    }

    /// The inline payload, if one travels with this envelope.
    pub fn inline(&self) -> Option<InlinePayload> {
        self.inline_bytes()
            .and_then(|b| InlinePayload::decode(b).ok())
    }

    /// The decoded body.
    pub fn body(&self) -> &EnvelopeBody {
        &self.body
    }

    /// The sender's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The exact wire bytes (header and inline payload).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content id (SHA-256 of [`Self::header_bytes`]).
    pub fn id(&self) -> ContentId {
        self.id
    }
}

/// The content id of envelope bytes without decoding or verifying them: the SHA-256 of the
/// header `[body, signature]`, any inline payload left out, exactly as
/// [`SignedEnvelope::id`] would give for valid bytes. Bytes without an envelope's shape
/// get the hash of the bytes themselves. For bookkeeping before the relay has looked at a
/// message (matching acknowledgements to requests); never a substitute for `decode`.
pub fn content_id_of(bytes: &[u8]) -> ContentId {
    let header_len = bytes
        .split_first()
        .filter(|(head, _)| **head == HEADER_HEAD || **head == WITH_INLINE_HEAD)
        .and_then(|(_, rest)| {
            let body_len = cbor::first_item_len(rest).ok()?;
            let header = rest.get(..body_len.checked_add(SIGNATURE_LEN)?)?;
            Some(header.len())
        });
    match header_len {
        Some(len) => {
            let mut header = Vec::with_capacity(len + 1);
            header.push(HEADER_HEAD);
            header.extend_from_slice(bytes.get(1..=len).unwrap_or_default());
            ContentId::of(&header)
        }
        None => ContentId::of(bytes),
    }
}

/// The shortest CBOR head of a byte string of `len` bytes.
fn bytestring_head(len: usize) -> Vec<u8> {
    let len = len as u64;
    match len {
        0..=23 => vec![0x40 | len as u8],
        24..=0xff => vec![0x58, len as u8],
        0x100..=0xffff => [&[0x59][..], &(len as u16).to_be_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[0x5a][..], &(len as u32).to_be_bytes()].concat(),
        _ => [&[0x5b][..], &len.to_be_bytes()].concat(),
    }
}

/// The `v` field of a body that did not decode, if it is present and not ours.
fn version_of(body_bytes: &[u8]) -> Option<u64> {
    let value: ciborium::Value =
        ciborium::de::from_reader_with_recursion_limit(body_bytes, cbor::MAX_DEPTH + 1).ok()?;
    let map = value.as_map()?;
    let v = map
        .iter()
        .find(|(k, _)| k.as_text() == Some("v"))?
        .1
        .as_integer()?;
    let v = u64::try_from(v).ok()?;
    (v != u64::from(ENVELOPE_VERSION)).then_some(v)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::type_complexity,
        clippy::needless_range_loop
    )]
    use super::*;
    use rand_core::SeedableRng;

    fn id(s: &str) -> AgencyId {
        AgencyId::parse(s).unwrap()
    }

    fn body() -> EnvelopeBody {
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Document,
            from: id("000.00.00.G22"),
            to: vec![id("000.00.00.H41"), id("000.00.00.H44")],
            seq: 1,
            prev: None,
            created_ms: 1_790_000_000_000,
            routing: Routing {
                doc_type: Some("CV".into()),
                priority: 2,
                due: Some("2026-12-01".into()),
                ..Routing::default()
            },
            payload: Payload::External {
                manifest: [7; 32],
                size: 1234,
            },
        }
    }

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand_chacha::ChaCha20Rng::seed_from_u64(1))
    }

    /// Fields (and struct variants' fields) are declared in canonical key order, so the
    /// body's first encoding is canonical and signing never re-sorts it.
    #[test]
    fn fields_are_declared_in_canonical_key_order() {
        let full = EnvelopeBody {
            prev: Some(ContentId([3; 32])),
            routing: Routing {
                refers_to: Some(ContentId([4; 32])),
                status: Some(StatusCode::Accepted),
                ..body().routing
            },
            ..body()
        };
        let payloads = [
            Payload::None,
            Payload::Inline {
                size: 10,
                digest: [5; 32],
            },
            full.payload.clone(),
            Payload::Roster(vec![1, 2]),
        ];
        for payload in payloads {
            let body = EnvelopeBody {
                payload,
                ..full.clone()
            };
            let mut first_try = Vec::new();
            ciborium::into_writer(&body, &mut first_try).unwrap();
            cbor::check_canonical(&first_try, usize::MAX).unwrap();
        }
        let inline = InlinePayload {
            manifest: vec![1],
            chunk: vec![2],
        };
        let mut first_try = Vec::new();
        ciborium::into_writer(&inline, &mut first_try).unwrap();
        cbor::check_canonical(&first_try, usize::MAX).unwrap();
    }

    #[test]
    fn sign_decode_verify() {
        let key = key();
        let env = SignedEnvelope::sign(body(), &key).unwrap();
        let back = SignedEnvelope::decode(env.bytes()).unwrap();
        assert_eq!(back, env);
        back.verify(&key.verifying_key()).unwrap();
        let other = SigningKey::from_seed(&[9; 32]);
        assert!(back.verify(&other.verifying_key()).is_err());
    }

    #[test]
    fn field_rules() {
        let key = key();
        let cases: Vec<(Box<dyn Fn(&mut EnvelopeBody)>, &str)> = vec![
            (Box::new(|b| b.to.reverse()), "sorted"),
            (Box::new(|b| b.to.clear()), "no recipients"),
            (Box::new(|b| b.to.insert(0, b.from.clone())), "itself"),
            (Box::new(|b| b.seq = 0), "start at 1"),
            (Box::new(|b| b.seq = 2), "missing for seq"),
            (
                Box::new(|b| b.prev = Some(ContentId([1; 32]))),
                "no previous",
            ),
            (Box::new(|b| b.routing.priority = 5), "priority 4"),
            (
                Box::new(|b| b.routing.due = Some("2026-13-01".into())),
                "YYYY-MM-DD",
            ),
            (
                Box::new(|b| b.routing.doc_type = Some("x".repeat(65))),
                "1 to 64",
            ),
            (Box::new(|b| b.kind = Kind::Update), "earlier document"),
            (Box::new(|b| b.kind = Kind::Status), "status names"),
            (Box::new(|b| b.payload = Payload::None), "does not fit"),
            (Box::new(|b| b.v = 2), "version 2"),
        ];
        for (mutate, why) in cases {
            let mut b = body();
            mutate(&mut b);
            let err = SignedEnvelope::sign(b, &key).unwrap_err().to_string();
            assert!(err.contains(why), "expected {why:?} in {err}");
        }
    }

    #[test]
    fn unknown_version_is_named() {
        // Hand-encode a body with v = 9 by editing the canonical bytes of a v1 body.
        let key = key();
        let env = SignedEnvelope::sign(body(), &key).unwrap();
        let mut bytes = env.bytes().to_vec();
        let pos = bytes.windows(2).position(|w| w == [0x61, b'v']).unwrap();
        assert_eq!(bytes[pos + 2], 0x01);
        bytes[pos + 2] = 0x09;
        assert_eq!(
            SignedEnvelope::decode(&bytes),
            Err(EnvelopeError::UnknownVersion { found: 9 })
        );
    }

    #[test]
    fn malformed_shapes_are_refused() {
        assert!(SignedEnvelope::decode(&[]).is_err());
        assert!(SignedEnvelope::decode(&[0x80]).is_err());
        assert!(SignedEnvelope::decode(&[0x82, 0x01, 0x02]).is_err());
        let env = SignedEnvelope::sign(body(), &key()).unwrap();
        let truncated = &env.bytes()[..env.bytes().len() - 1];
        assert!(SignedEnvelope::decode(truncated).is_err());
    }

    #[test]
    fn inline_payloads_are_committed_and_the_header_stands_alone() {
        let key = key();
        let mut b = body();
        b.payload = Payload::None;
        let inline = InlinePayload {
            manifest: vec![1; 40],
            chunk: vec![2; 300],
        };
        let env = SignedEnvelope::sign_inline(b, &inline, &key).unwrap();
        assert_eq!(SignedEnvelope::decode(env.bytes()).unwrap(), env);
        assert_eq!(env.inline().unwrap(), inline);
        // The header alone (what the ledger keeps) decodes only as "payload missing", but its
        // signature and id are those of the full envelope.
        let header = env.header_bytes();
        assert_eq!(ContentId::of(&header), env.id());
        assert_eq!(content_id_of(env.bytes()), env.id());
        assert_eq!(content_id_of(&header), env.id());
        assert_eq!(
            content_id_of(b"not an envelope"),
            ContentId::of(b"not an envelope")
        );
        let err = SignedEnvelope::decode(&header).unwrap_err().to_string();
        assert!(err.contains("inline payload bytes missing"), "{err}");
        let header_only = SignedEnvelope::decode_header(&header).unwrap();
        assert_eq!(header_only.id(), env.id());
        header_only.verify(&key.verifying_key()).unwrap();
        assert!(header_only.inline().is_none());
        assert!(SignedEnvelope::decode_header(env.bytes()).is_err());
        // Any change to the inline bytes breaks the commitment.
        let mut tampered = env.bytes().to_vec();
        *tampered.last_mut().unwrap() ^= 1;
        let err = SignedEnvelope::decode(&tampered).unwrap_err().to_string();
        assert!(err.contains("digest"), "{err}");
        // Inline bytes beside a body that commits to none are refused.
        let plain = SignedEnvelope::sign(body(), &key).unwrap();
        let mut extra = plain.bytes().to_vec();
        extra[0] = 0x83;
        extra.extend_from_slice(&[0x41, 0x00]);
        assert!(SignedEnvelope::decode(&extra).is_err());
        // And a body committing to an inline payload cannot be signed without it.
        let mut b = body();
        b.payload = Payload::Inline {
            digest: [0; 32],
            size: 3,
        };
        assert!(SignedEnvelope::sign(b, &key).is_err());
    }
}
