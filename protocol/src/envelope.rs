//! The signed envelope (DESIGN §4): the small, gossiped, per-sender hash-chained record that
//! announces a document, status, revocation, update, replacement or roster epoch.
//!
//! Wire form: the deterministic CBOR array `[body, signature]`. The signature covers
//! `SignatureDomain::Envelope.prefix() || body bytes`, where the body bytes are the exact
//! bytes inside the array, so verification needs no re-encoding. The content id is the
//! SHA-256 of the whole array. [`SignedEnvelope::decode`] checks shape and limits; the
//! signature needs the sender's key from the roster, so it is checked by
//! [`SignedEnvelope::verify`], which every receiver calls before acting.

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
    /// edXML DocumentType code (e.g. `1` for a decision), for documents.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub doc_type: Option<String>,
    /// Priority 0–4 (edXML OtherInfo/Priority).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: u8,
    /// Due date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// The earlier document this one answers (ResponseFor), revokes, updates or replaces, or
    /// that a status is about.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub refers_to: Option<ContentId>,
    /// The status code, for status envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusCode>,
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
    /// A small sealed payload carried in the envelope: the manifest's canonical bytes and
    /// its single ciphertext chunk.
    Inline {
        #[serde(with = "serde_bytes")]
        manifest: Vec<u8>,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
    },
    /// A sealed payload fetched by hash: the manifest's id (SHA-256 of its canonical bytes)
    /// and the total ciphertext size (manifest and chunks), for quotas before fetching.
    External {
        #[serde(with = "crate::cbor::bytes32")]
        manifest: [u8; 32],
        size: u64,
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
    /// What the envelope carries.
    pub kind: Kind,
    /// The signing agency.
    pub from: AgencyId,
    /// Recipients, sorted and unique (empty only for roster envelopes).
    pub to: Vec<AgencyId>,
    /// Per-sender sequence number, from 1, without gaps.
    pub seq: u64,
    /// The content id of the sender's envelope `seq - 1` (absent for `seq == 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<ContentId>,
    /// Creation time, milliseconds since the Unix epoch, by the sender's clock.
    pub created_ms: u64,
    /// Clear routing fields.
    pub routing: Routing,
    /// The sealed content.
    pub payload: Payload,
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
        if let Payload::Inline { manifest, chunk } = &self.payload
            && manifest.len() + chunk.len() > MAX_INLINE_PAYLOAD
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

/// A decoded envelope together with its exact bytes and content id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEnvelope {
    body: EnvelopeBody,
    signature: Signature,
    bytes: Vec<u8>,
    id: ContentId,
}

/// `[body, bstr(64)]`: the array head (1 byte) and the signature's head (2 bytes) + 64.
const ARRAY_HEAD: usize = 1;
const SIGNATURE_TAIL: usize = 2 + 64;

impl SignedEnvelope {
    /// Validates and signs `body`.
    pub fn sign(body: EnvelopeBody, key: &SigningKey) -> Result<Self, EnvelopeError> {
        body.validate()?;
        let body_bytes = cbor::to_canonical(&body)?;
        let signature = key.sign(SignatureDomain::Envelope, &body_bytes);
        let mut bytes = Vec::with_capacity(ARRAY_HEAD + body_bytes.len() + SIGNATURE_TAIL);
        bytes.push(0x82);
        bytes.extend_from_slice(&body_bytes);
        bytes.extend_from_slice(&[0x58, 0x40]);
        bytes.extend_from_slice(&signature.0);
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(CborError::TooLarge {
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            }
            .into());
        }
        let id = ContentId::of(&bytes);
        Ok(Self {
            body,
            signature,
            bytes,
            id,
        })
    }

    /// Decodes untrusted bytes: deterministic CBOR, at most [`MAX_ENVELOPE_LEN`], a known
    /// version and valid fields. Does not check the signature (see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        cbor::check_canonical(bytes, MAX_ENVELOPE_LEN)?;
        let (head, rest) = bytes.split_first().ok_or(EnvelopeError::Shape)?;
        let split = rest
            .len()
            .checked_sub(SIGNATURE_TAIL)
            .ok_or(EnvelopeError::Shape)?;
        let (body_bytes, tail) = rest.split_at(split);
        let (sig_head, sig) = tail.split_at(2);
        if *head != 0x82 || sig_head != [0x58, 0x40] {
            return Err(EnvelopeError::Shape);
        }
        let signature = Signature(sig.try_into().map_err(|_| EnvelopeError::Shape)?);
        // The body must itself be exactly one canonical item (not, say, two items that
        // happen to fill the space before a signature-looking tail).
        cbor::check_canonical(body_bytes, MAX_ENVELOPE_LEN).map_err(|_| EnvelopeError::Shape)?;
        let body: EnvelopeBody = match cbor::from_canonical(body_bytes, MAX_ENVELOPE_LEN) {
            Ok(body) => body,
            Err(e) => {
                return Err(version_of(body_bytes)
                    .map_or(e.into(), |found| EnvelopeError::UnknownVersion { found }));
            }
        };
        body.validate()?;
        Ok(Self {
            body,
            signature,
            bytes: bytes.to_vec(),
            id: ContentId::of(bytes),
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
        let end = self.bytes.len().saturating_sub(SIGNATURE_TAIL);
        self.bytes.get(ARRAY_HEAD..end).unwrap_or_default()
    }

    /// The decoded body.
    pub fn body(&self) -> &EnvelopeBody {
        &self.body
    }

    /// The sender's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The exact wire bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content id (SHA-256 of [`Self::bytes`]).
    pub fn id(&self) -> ContentId {
        self.id
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
}
