//! Audit ledger entries (DESIGN §6): what each central node's Merkle log records, and the
//! log's origin and checkpoint conventions.
//!
//! An entry is either an envelope **header** (`[body, signature]`, exactly
//! [`SignedEnvelope::header_bytes`]: signed by its agency, payload left out, verifiable on its
//! own with [`SignedEnvelope::decode_header`]) or a **roster epoch** reference (the epoch, the
//! SHA-256 of the roster's bytes, and the root signatures over them; the roster itself is
//! served by central nodes at `/roster/<epoch>` and checked against the digest). The two
//! encodings differ in their first byte (a CBOR array `0x82` for headers, a map for roster
//! references), so an entry's bytes say what it is. The RFC 6962 leaf is
//! `leaf_hash(entry bytes)`; for a header, `SHA-256(entry bytes)` is the envelope's content
//! id, which is how logs deduplicate.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cbor::{self, CborError};
use crate::content_id::ContentId;
use crate::envelope::{EnvelopeError, SignedEnvelope};
use crate::roster::{RootSignature, SignedRoster};

/// Largest entry: one tlog-tiles entry bundle slot (u16 length prefix).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// A roster epoch as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterRef {
    pub epoch: u64,
    /// SHA-256 of the roster's canonical bytes ([`SignedRoster::roster`]).
    #[serde(with = "crate::cbor::bytes32")]
    pub digest: [u8; 32],
    /// The root signatures over those bytes.
    pub sigs: Vec<RootSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterEntryWire {
    roster: RosterRef,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerEntry {
    /// An envelope header (documents, statuses, recalls, updates…).
    Envelope(Box<SignedEnvelope>),
    /// A roster epoch.
    Roster(RosterRef),
}

/// Why entry bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger entry is {len} bytes; the limit is {MAX_ENTRY_LEN}")]
    TooLarge { len: usize },
    #[error("ledger entry is empty")]
    Empty,
    #[error("ledger entry envelope header: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("ledger entry roster reference: {0}")]
    Roster(#[from] CborError),
}

impl LedgerEntry {
    /// The entry for an envelope (its header).
    pub fn envelope(env: &SignedEnvelope) -> Result<Self, LedgerError> {
        Self::decode(&env.header_bytes())
    }

    /// The entry for a signed roster epoch.
    pub fn roster(signed: &SignedRoster, epoch: u64) -> Self {
        Self::Roster(RosterRef {
            epoch,
            digest: Sha256::digest(&signed.roster).into(),
            sigs: signed.sigs.clone(),
        })
    }

    /// The entry's canonical bytes (what the log stores and hashes).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Envelope(env) => env.header_bytes(),
            // A struct of byte strings, integers and keys always encodes.
            Self::Roster(r) => {
                cbor::to_canonical(&RosterEntryWire { roster: r.clone() }).unwrap_or_default()
            }
        }
    }

    /// Decodes untrusted entry bytes (size-limited, canonical). Signatures are checked by
    /// the auditor against the roster in force, not here.
    pub fn decode(bytes: &[u8]) -> Result<Self, LedgerError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(LedgerError::TooLarge { len: bytes.len() });
        }
        match bytes.first() {
            None => Err(LedgerError::Empty),
            Some(0x82) => Ok(Self::Envelope(Box::new(SignedEnvelope::decode_header(
                bytes,
            )?))),
            Some(_) => {
                let wire: RosterEntryWire = cbor::from_canonical(bytes, MAX_ENTRY_LEN)?;
                Ok(Self::Roster(wire.roster))
            }
        }
    }

    /// The deduplication key: the envelope's content id, or the hash of the roster entry.
    pub fn key(&self) -> ContentId {
        match self {
            Self::Envelope(env) => env.id(),
            Self::Roster(_) => ContentId::of(&self.to_bytes()),
        }
    }
}

/// The origin line of a central node's log checkpoints: `<federation>/<central node name>`
/// (C2SP tlog-checkpoint), e.g. `lienthong-vn/central-a`.
pub fn log_origin(federation: &str, central_node: &str) -> String {
    format!("{federation}/{central_node}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::agency::AgencyId;
    use crate::envelope::{ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, Payload, Routing};
    use crate::keys::SigningKey;

    #[test]
    fn headers_and_roster_refs_round_trip() {
        let key = SigningKey::from_seed(&[1; 32]);
        let body = EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Document,
            from: AgencyId::parse("000.00.00.G22").unwrap(),
            to: vec![AgencyId::parse("000.00.00.H41").unwrap()],
            seq: 1,
            prev: None,
            created_ms: 1,
            routing: Routing::default(),
            payload: Payload::None,
        };
        let inline = InlinePayload {
            manifest: vec![1; 10],
            chunk: vec![2; 1000],
        };
        let env = SignedEnvelope::sign_inline(body, &inline, &key).unwrap();
        let entry = LedgerEntry::envelope(&env).unwrap();
        let bytes = entry.to_bytes();
        assert!(bytes.len() < env.bytes().len(), "the payload is left out");
        assert_eq!(LedgerEntry::decode(&bytes).unwrap(), entry);
        assert_eq!(entry.key(), env.id());

        let roster = LedgerEntry::Roster(RosterRef {
            epoch: 3,
            digest: [9; 32],
            sigs: vec![],
        });
        assert_eq!(LedgerEntry::decode(&roster.to_bytes()).unwrap(), roster);
        assert!(matches!(LedgerEntry::decode(&[]), Err(LedgerError::Empty)));
        assert!(matches!(
            LedgerEntry::decode(&vec![0x82; 70_000]),
            Err(LedgerError::TooLarge { .. })
        ));
        assert!(
            LedgerEntry::decode(env.bytes()).is_err(),
            "a full envelope is not an entry"
        );
    }
}
