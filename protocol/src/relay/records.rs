//! The records the relay core persists (values of the [`Column`]s) and their key layouts.
//! All values are deterministic CBOR; decoding a stored record never panics (a corrupt
//! record is reported, not trusted). The records written for every document declare their
//! fields in canonical key order, so encoding them never has to sort the maps.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::agency::AgencyId;
use crate::cbor::{self, CborError};
use crate::content_id::ContentId;
use crate::status::{StatusChain, StatusCode};

use super::store::Column;

/// Largest stored record, in bytes.
pub const MAX_RECORD_LEN: usize = 64 * 1024;
/// Most status entries kept per (document, recipient).
pub const MAX_STATUS_HISTORY: usize = 64;

/// Why this node must get an envelope acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A local tenant sent it.
    Origin,
    /// This node accepted custody for another node.
    Custodian,
}

/// A pending delivery of one envelope to one recipient (column `Deliveries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRecord {
    pub role: Role,
    /// When the envelope was created (expiry counts from here).
    pub created_ms: u64,
}

/// A local tenant's sending chain and inbox position (column `Chains`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// Last sequence number used (0 before the first envelope).
    pub seq: u64,
    /// Content id of that envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<ContentId>,
    /// Next inbox position.
    pub inbox_next: u64,
}

/// A received envelope, for deduplication (column `Seen`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenRecord {
    /// When it was stored here.
    pub received_ms: u64,
}

/// One status in a (document, recipient) history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusEntry {
    /// The status envelope.
    pub id: ContentId,
    pub code: StatusCode,
    /// Its creation time, by its signer's clock.
    pub at_ms: u64,
}

/// The status chain of one recipient's copy of a document (column `Statuses`), kept by the
/// sender's node and by the recipient's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRecord {
    /// Where it stands.
    pub chain: StatusChain,
    /// Why delivery ended without arrival, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// The document's sender.
    pub sender: AgencyId,
    /// Statuses in the order applied (the last [`MAX_STATUS_HISTORY`]).
    pub history: Vec<StatusEntry>,
    /// When the document was created.
    pub sent_ms: u64,
}

impl StatusRecord {
    /// A record for a document just sent or received.
    pub fn new(sender: AgencyId, sent_ms: u64) -> Self {
        Self {
            sender,
            sent_ms,
            chain: StatusChain::default(),
            history: Vec::new(),
            ended: None,
        }
    }

    /// Appends an applied status, keeping the history bounded.
    pub fn push(&mut self, chain: StatusChain, entry: StatusEntry) {
        self.chain = chain;
        if self.history.len() >= MAX_STATUS_HISTORY {
            self.history.remove(0);
        }
        self.history.push(entry);
    }

    /// Puts a status that arrived after a later one from its author at index `at` of the
    /// history (where its author applied it), with `chain` the history replayed in that
    /// order. The history stays bounded: its oldest entry gives way, or, placed before every
    /// entry of a full history, the status itself is not kept.
    pub fn insert(&mut self, at: usize, chain: StatusChain, entry: StatusEntry) {
        self.chain = chain;
        self.history.insert(at.min(self.history.len()), entry);
        if self.history.len() > MAX_STATUS_HISTORY {
            self.history.remove(0);
        }
    }
}

/// Two different envelopes a sender signed for the same place in its chain (column
/// `Evidence`): both are in `Envelopes`, and together prove equivocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Equivocation {
    pub sender: AgencyId,
    pub seq: u64,
    pub first: ContentId,
    pub second: ContentId,
}

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored record in column {column:?} is corrupt: {source}")]
pub struct RecordError {
    pub column: Column,
    #[source]
    pub source: CborError,
}

/// Encodes a record.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Records are built by this crate from valid values; encoding cannot fail for them.
    cbor::to_canonical(record).unwrap_or_default()
}

/// Decodes a record read from `column`.
pub fn decode<T: Serialize + DeserializeOwned>(
    column: Column,
    bytes: &[u8],
) -> Result<T, RecordError> {
    cbor::from_canonical(bytes, MAX_RECORD_LEN).map_err(|source| RecordError { column, source })
}

/// `id ‖ agency`: keys of `Deliveries` and `Statuses`.
pub fn id_agency_key(id: &ContentId, agency: &AgencyId) -> Vec<u8> {
    let mut key = Vec::with_capacity(32 + agency.as_str().len());
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(agency.as_str().as_bytes());
    key
}

/// Splits an `id ‖ agency` key.
pub fn split_id_agency_key(key: &[u8]) -> Option<(ContentId, AgencyId)> {
    let (id, agency) = key.split_at_checked(32)?;
    let id = ContentId(id.try_into().ok()?);
    let agency = AgencyId::parse_any(std::str::from_utf8(agency).ok()?).ok()?;
    Some((id, agency))
}

/// `agency ‖ 0x00 ‖ n (u64 BE)`: keys of `Inbox`, `SenderSeq` and `Evidence`.
pub fn agency_seq_key(agency: &AgencyId, n: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(agency.as_str().len() + 9);
    key.extend_from_slice(agency.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(&n.to_be_bytes());
    key
}

/// Splits an `agency ‖ 0x00 ‖ n` key.
pub fn split_agency_seq_key(key: &[u8]) -> Option<(AgencyId, u64)> {
    let (agency, n) = key.split_at_checked(key.len().checked_sub(9)?)?;
    let (zero, n) = n.split_first()?;
    if *zero != 0 {
        return None;
    }
    let agency = AgencyId::parse_any(std::str::from_utf8(agency).ok()?).ok()?;
    Some((agency, u64::from_be_bytes(n.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Records written for every document encode canonically at the first try.
    #[test]
    fn per_document_records_are_declared_in_canonical_key_order() {
        let mut status = StatusRecord::new(AgencyId::parse("000.00.00.G22").unwrap(), 1);
        status.ended = Some("expired".into());
        let chain = status
            .chain
            .apply(crate::status::Party::Recipient, StatusCode::Arrived);
        status.push(
            chain.unwrap(),
            StatusEntry {
                id: ContentId([1; 32]),
                code: StatusCode::Arrived,
                at_ms: 2,
            },
        );
        let head = ChainHead {
            seq: 1,
            last: Some(ContentId([2; 32])),
            inbox_next: 3,
        };
        let delivery = DeliveryRecord {
            role: Role::Origin,
            created_ms: 4,
        };
        fn first_try_is_canonical(value: &impl Serialize) {
            let mut encoded = Vec::new();
            ciborium::into_writer(value, &mut encoded).unwrap();
            cbor::check_canonical(&encoded, usize::MAX).unwrap();
        }
        first_try_is_canonical(&status);
        first_try_is_canonical(&head);
        first_try_is_canonical(&delivery);
    }

    #[test]
    fn keys_split_back() {
        let a = AgencyId::parse("000.46.24.H44").unwrap();
        let id = ContentId([5; 32]);
        assert_eq!(
            split_id_agency_key(&id_agency_key(&id, &a)),
            Some((id, a.clone()))
        );
        assert_eq!(split_agency_seq_key(&agency_seq_key(&a, 77)), Some((a, 77)));
        assert_eq!(split_agency_seq_key(b"short"), None);
    }

    #[test]
    fn history_is_bounded() {
        let mut r = StatusRecord::new(AgencyId::parse("000.00.00.G22").unwrap(), 0);
        for i in 0..100 {
            r.push(
                StatusChain::default(),
                StatusEntry {
                    code: StatusCode::Assigned,
                    id: ContentId([0; 32]),
                    at_ms: i,
                },
            );
        }
        assert_eq!(r.history.len(), MAX_STATUS_HISTORY);
        assert_eq!(r.history.first().unwrap().at_ms, 36);
        let back: StatusRecord = decode(Column::Statuses, &encode(&r)).unwrap();
        assert_eq!(back, r);
    }
}
