//! The durable submission queues: one per central log, in the `LedgerQueue` column.
//!
//! Key: central node name ‖ 0x00 ‖ sender ‖ 0x00 ‖ sequence number (8 bytes, big-endian: the
//! sender's `SenderSeq` key); value: the envelope's content id. The ledger entry (the
//! envelope header `[body, signature]`) is cut from the stored envelope when the queue is
//! read ([`entry_for`]): own envelopes are never deleted, and a copy of the header in every
//! log's queue was most of the bytes the store wrote and compacted per sent document.
//! (Rows written before this held the entry itself, and are read as such.) The key makes a
//! queue idempotent (writing an envelope twice, or re-deriving its entry after a crash,
//! lands on the same row) and orders it by sender and sequence number, the order in which
//! each sender's envelopes must reach a log: auditors check every sender's chain in log
//! order.
//!
//! [`LedgerHook`] adds the rows to the very batch that stores one of this node's own
//! envelopes (documents, statuses, 01 answers, recalls…), so an envelope is never durable
//! without its submissions, and a crash cannot lose one.

use std::collections::{HashMap, HashSet};

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::cbor;
use lienthong_protocol::relay::records::split_agency_seq_key;
use lienthong_protocol::relay::store::{Batch, Column, StoreOp};
use lienthong_protocol::roster::Roster;

use crate::store::{Store, StoreError};

/// Length of a queue row's value when it is a content id.
const CONTENT_ID_LEN: usize = 32;

/// The key prefix of one log's queue.
pub fn queue_prefix(log: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(log.len() + 1 + 32);
    key.extend_from_slice(log.as_bytes());
    key.push(0);
    key
}

/// The key of one entry in one log's queue: the log's prefix and the envelope's
/// `SenderSeq` key (sender ‖ 0x00 ‖ sequence number).
pub fn queue_key(log: &str, sender_seq: &[u8]) -> Vec<u8> {
    let mut key = queue_prefix(log);
    key.extend_from_slice(sender_seq);
    key
}

/// The header `[body, signature]` of stored envelope bytes (`[body, signature]` or
/// `[body, signature, inline payload]`), cut without walking the inline payload (up to
/// 32 KiB): this runs on the driver thread for every own envelope stored.
fn header_of(wire: &[u8]) -> Option<Vec<u8>> {
    const HEADER: u8 = 0x82; // A CBOR array of two (see `ledger`).
    const WITH_INLINE: u8 = 0x83;
    const SIGNATURE: usize = 2 + 64; // A 64-byte CBOR byte string.
    let (&head, rest) = wire.split_first()?;
    if head != HEADER && head != WITH_INLINE {
        return None;
    }
    let end = cbor::first_item_len(rest).ok()?.checked_add(SIGNATURE)?;
    let mut header = Vec::with_capacity(end + 1);
    header.push(HEADER);
    header.extend_from_slice(rest.get(..end)?);
    Some(header)
}

/// The ledger entry a queue row's `value` stands for: the header of the stored envelope it
/// names, or the value itself when the row holds the entry (rows written before queues held
/// content ids; a header is never 32 bytes). `None` when the envelope is not stored, or not
/// an envelope. Blocking.
pub fn entry_for(store: &Store, value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    if value.len() != CONTENT_ID_LEN {
        return Ok(Some(value.to_vec()));
    }
    Ok(store
        .get(Column::Envelopes, value)?
        .as_deref()
        .and_then(header_of))
}

/// Turns the driver's batches into batches that also queue this node's own envelopes for
/// every central log of the roster in force.
#[derive(Debug, Clone, Default)]
pub struct LedgerHook {
    tenants: HashSet<AgencyId>,
    logs: Vec<String>,
}

impl LedgerHook {
    /// A hook for envelopes signed by `tenants`, queued for the central nodes of `roster`.
    pub fn new(tenants: impl IntoIterator<Item = AgencyId>, roster: &Roster) -> Self {
        let mut hook = Self {
            tenants: tenants.into_iter().collect(),
            logs: Vec::new(),
        };
        hook.set_roster(roster);
        hook
    }

    /// Follows a new roster epoch (central nodes added or removed).
    pub fn set_roster(&mut self, roster: &Roster) {
        self.logs = roster.central.iter().map(|c| c.name.clone()).collect();
    }

    /// Appends a queue row per log for each own envelope the batch stores (its content id);
    /// true when it did. Envelopes of other agencies (received, held in custody) are not
    /// ours to submit.
    ///
    /// The relay signs a tenant's envelope in the batch that stores it, with the tenant's
    /// sequence index row (`SenderSeq`: tenant ‖ 0x00 ‖ seq → content id): those rows name
    /// the own envelopes, so no stored envelope is decoded here (this runs on the driver
    /// thread for every batch). A received envelope indexes its (foreign) sender.
    pub fn extend(&self, batch: &mut Batch) -> bool {
        if self.tenants.is_empty() || self.logs.is_empty() {
            return false;
        }
        // Content id → the envelope's SenderSeq key.
        let own: HashMap<&[u8], &[u8]> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::Put {
                    column: Column::SenderSeq,
                    key,
                    value,
                } => split_agency_seq_key(key)
                    .filter(|(sender, _)| self.tenants.contains(sender))
                    .map(|_| (value.as_slice(), key.as_slice())),
                _ => None,
            })
            .collect();
        if own.is_empty() {
            return false;
        }
        let mut rows = Vec::new();
        for op in &batch.ops {
            let StoreOp::Put {
                column: Column::Envelopes,
                key,
                value,
            } = op
            else {
                continue;
            };
            let Some(sender_seq) = own.get(key.as_slice()) else {
                continue;
            };
            // Only what the log task will be able to cut an entry from.
            if header_of(value).is_none() {
                continue;
            }
            for log in &self.logs {
                rows.push(StoreOp::Put {
                    column: Column::LedgerQueue,
                    key: queue_key(log, sender_seq),
                    value: key.clone(),
                });
            }
        }
        let any = !rows.is_empty();
        batch.ops.extend(rows);
        any
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use lienthong_protocol::envelope::{
        ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
    };
    use lienthong_protocol::keys::SigningKey;
    use lienthong_protocol::ledger::LedgerEntry;
    use lienthong_protocol::relay::records::agency_seq_key;

    use super::*;

    fn envelope(from: &str, seed: u8) -> SignedEnvelope {
        let body = EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Document,
            from: AgencyId::parse(from).unwrap(),
            to: vec![AgencyId::parse("000.00.00.H41").unwrap()],
            seq: 1,
            prev: None,
            created_ms: 1,
            routing: Routing::default(),
            payload: Payload::External {
                manifest: [seed; 32],
                size: 10,
            },
        };
        SignedEnvelope::sign(body, &SigningKey::from_seed(&[seed; 32])).unwrap()
    }

    /// Stores `env` as the relay does, whether it signed or received it: the envelope and
    /// its sender's sequence index row.
    fn store_envelope(batch: &mut Batch, env: &SignedEnvelope) {
        batch.put(
            Column::Envelopes,
            env.id().as_bytes().to_vec(),
            env.bytes().to_vec(),
        );
        batch.put(
            Column::SenderSeq,
            agency_seq_key(&env.body().from, env.body().seq),
            env.id().as_bytes().to_vec(),
        );
    }

    #[test]
    fn the_header_is_cut_from_envelopes_with_and_without_inline_payloads() {
        let plain = envelope("000.00.00.G01", 1);
        assert_eq!(header_of(plain.bytes()).unwrap(), plain.header_bytes());
        let body = EnvelopeBody {
            payload: Payload::None,
            ..plain.body().clone()
        };
        let inline = lienthong_protocol::envelope::InlinePayload {
            manifest: vec![1; 10],
            chunk: vec![2; 5000],
        };
        let with_inline =
            SignedEnvelope::sign_inline(body, &inline, &SigningKey::from_seed(&[1; 32])).unwrap();
        assert!(with_inline.bytes().len() > 5000);
        assert_eq!(
            header_of(with_inline.bytes()).unwrap(),
            with_inline.header_bytes()
        );
        assert_eq!(header_of(&[]), None);
        assert_eq!(header_of(&[0x82, 0xff]), None);
    }

    #[test]
    fn own_envelopes_are_queued_for_every_log_in_the_same_batch() {
        let hook = LedgerHook {
            tenants: [AgencyId::parse("000.00.00.G01").unwrap()].into(),
            logs: vec!["c0".into(), "c1".into()],
        };
        let own = envelope("000.00.00.G01", 1);
        let foreign = envelope("000.00.00.G02", 2);
        let mut batch = Batch::default();
        store_envelope(&mut batch, &own);
        store_envelope(&mut batch, &foreign);
        batch.put(Column::Meta, b"x".to_vec(), b"y".to_vec());
        assert!(hook.extend(&mut batch));
        let queued: Vec<_> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::Put {
                    column: Column::LedgerQueue,
                    key,
                    value,
                } => Some((key.clone(), value.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            queued.len(),
            2,
            "one row per log, none for the foreign envelope"
        );
        for (log, (key, value)) in ["c0", "c1"].iter().zip(&queued) {
            assert_eq!(key, &queue_key(log, &agency_seq_key(&own.body().from, 1)));
            assert_eq!(
                value.as_slice(),
                own.id().as_bytes(),
                "the row names the envelope"
            );
        }

        let mut foreign_only = Batch::default();
        store_envelope(&mut foreign_only, &foreign);
        assert!(!hook.extend(&mut foreign_only));
        assert_eq!(foreign_only.ops.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_content_id_reads_as_its_envelopes_header_and_an_old_row_as_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let body = EnvelopeBody {
            payload: Payload::None,
            ..envelope("000.00.00.G01", 1).body().clone()
        };
        let inline = lienthong_protocol::envelope::InlinePayload {
            manifest: vec![1; 10],
            chunk: vec![2; 3000],
        };
        let env =
            SignedEnvelope::sign_inline(body, &inline, &SigningKey::from_seed(&[1; 32])).unwrap();
        let mut batch = Batch::default();
        store_envelope(&mut batch, &env);
        store.commit(batch).await.unwrap();

        let entry = entry_for(&store, env.id().as_bytes()).unwrap().unwrap();
        assert_eq!(
            entry,
            env.header_bytes(),
            "the header, without the inline payload"
        );
        assert_eq!(LedgerEntry::decode(&entry).unwrap().key(), env.id());
        // A row written when queues held the entry itself.
        let old_row = env.header_bytes().to_vec();
        assert_eq!(entry_for(&store, &old_row).unwrap().unwrap(), old_row);
        // A content id with no envelope stored.
        assert_eq!(entry_for(&store, &[7; 32]).unwrap(), None);
    }
}
