//! The send path of a DMS request: validate, seal for the recipients, store an external
//! payload durably, then hand the envelope to the relay driver, which signs it, stores it
//! with group commit and answers once it is durable.
//!
//! Small payloads (one chunk, at most [`MAX_INLINE`] bytes sealed) travel inline beside the
//! envelope, so a typical document reaches its recipient in one message; larger ones are
//! stored as chunks and fetched by hash.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::cbor;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::{Document, DocumentError, Reference};
use lienthong_protocol::envelope::{InlinePayload, Kind, Routing};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::{Content, MetaRecord, Submission};
use lienthong_protocol::roster::Roster;
use lienthong_protocol::seal::{self, SealError, SenderEpochs};
use rand_core::OsRng;

use crate::driver::{DriverError, DriverHandle, now_ms};
use crate::store::{Store, StoreError, WriteOp};

/// Key prefix of the references of sent documents ([`SendPath::sent_record`]).
const SENT_REFERENCE_PREFIX: &[u8] = b"send/reference\0";
/// Largest stored reference: four short texts.
const MAX_REFERENCE_LEN: usize = 8 * 1024;

/// Largest sealed payload (manifest and chunk) sent inline.
pub const MAX_INLINE: usize = 32 * 1024;

/// Why a send was refused.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("recipient {0} is not an active member of the federation")]
    UnknownRecipient(AgencyId),
    #[error("sealing: {0}")]
    Seal(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// Seals and submits documents for the tenants of this node.
#[derive(Debug, Clone)]
pub struct SendPath {
    driver: DriverHandle,
    store: Store,
    roster: Arc<RwLock<Arc<Roster>>>,
    epochs: Arc<Mutex<SenderEpochs>>,
    /// Idempotency keys of sends in progress, shared by every front end of this node (the
    /// API, the hub listener): a concurrent send with the same key is told so.
    in_progress: Arc<Mutex<HashSet<Vec<u8>>>>,
}

/// A send in progress under an idempotency key (see [`SendPath::begin`]); the key is free
/// again when this is dropped, however the send ended.
#[derive(Debug)]
pub struct InProgress {
    keys: Arc<Mutex<HashSet<Vec<u8>>>>,
    key: Vec<u8>,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl SendPath {
    /// A send path over a running driver.
    pub fn new(driver: DriverHandle, store: Store, roster: Arc<Roster>) -> Self {
        Self {
            driver,
            store,
            roster: Arc::new(RwLock::new(roster)),
            epochs: Arc::new(Mutex::new(SenderEpochs::default())),
            in_progress: Arc::default(),
        }
    }

    /// Marks a send under idempotency key `key` as in progress, unless one already is
    /// (`None`). At most one per request in flight, so as bounded as those.
    pub fn begin(&self, key: &[u8]) -> Option<InProgress> {
        let fresh = self
            .in_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_vec());
        fresh.then(|| InProgress {
            keys: Arc::clone(&self.in_progress),
            key: key.to_vec(),
        })
    }

    /// Uses a newer roster for recipients' keys from now on.
    pub fn set_roster(&self, roster: Arc<Roster>) {
        if let Ok(mut current) = self.roster.write() {
            *current = roster;
        }
    }

    fn roster(&self) -> Arc<Roster> {
        self.roster
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Seals `plaintext` from `from` for `to` (active agencies of the roster): inline when it
    /// fits in one small chunk, otherwise stored durably as chunks and a manifest (the
    /// manifest last) before this returns. For statuses' sealed details too.
    pub async fn seal(
        &self,
        from: &AgencyId,
        to: &[AgencyId],
        plaintext: &[u8],
    ) -> Result<Content, SendError> {
        let roster = self.roster();
        let mut recipients = Vec::with_capacity(to.len());
        for r in to {
            let entry = roster
                .active_agency(r)
                .map_err(|_| SendError::UnknownRecipient(r.clone()))?;
            recipients.push((r.clone(), entry.encryption_key));
        }
        recipients.sort_by(|a, b| a.0.cmp(&b.0));
        recipients.dedup_by(|a, b| a.0 == b.0);
        let sealed = {
            let mut epochs = self
                .epochs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            seal::seal(
                plaintext,
                from,
                &recipients,
                &mut epochs,
                now_ms(),
                &mut OsRng,
            )?
        };
        let manifest = sealed.manifest.as_bytes().to_vec();
        let inline_size = manifest.len() + sealed.chunks.iter().map(Vec::len).sum::<usize>();
        let content = match sealed.chunks.as_slice() {
            [chunk] if inline_size <= MAX_INLINE => Content::Inline(InlinePayload {
                manifest,
                chunk: chunk.clone(),
            }),
            chunks => {
                let id = sealed.manifest.id();
                let mut ops = Vec::with_capacity(chunks.len() + 1);
                for (chunk_id, chunk) in sealed.manifest.chunks().iter().zip(chunks) {
                    ops.push(WriteOp::Put {
                        family: Column::Chunks,
                        key: chunk_id.0.to_vec(),
                        value: chunk.clone(),
                    });
                }
                // The manifest last: its presence means every chunk is there.
                ops.push(WriteOp::Put {
                    family: Column::Payloads,
                    key: id.0.to_vec(),
                    value: manifest,
                });
                self.store.write(ops).await?;
                Content::External {
                    manifest: id.0,
                    size: inline_size as u64,
                }
            }
        };
        Ok(content)
    }

    /// Sends an edXML-aligned document; resolves with its content id once durable (with
    /// its [`sent_record`](Self::sent_record)).
    pub async fn send_document(
        &self,
        from: &AgencyId,
        kind: Kind,
        routing: Routing,
        document: &Document,
    ) -> Result<ContentId, SendError> {
        let to: Vec<AgencyId> = document
            .header
            .to
            .iter()
            .map(|o| o.organ_id.clone())
            .collect();
        let records = vec![Self::sent_record(document)?];
        self.send_recorded(from, kind, to, routing, &document.to_bytes()?, records)
            .await
    }

    /// Seals `plaintext` for `to` and submits it.
    pub async fn send_bytes(
        &self,
        from: &AgencyId,
        kind: Kind,
        to: Vec<AgencyId>,
        routing: Routing,
        plaintext: &[u8],
    ) -> Result<ContentId, SendError> {
        self.send_recorded(from, kind, to, routing, plaintext, Vec::new())
            .await
    }

    /// As [`send_bytes`](Self::send_bytes), with `records` written to `Meta` in the
    /// envelope's own batch: durable exactly when the envelope is (see
    /// [`Submission::records`]).
    pub async fn send_recorded(
        &self,
        from: &AgencyId,
        kind: Kind,
        to: Vec<AgencyId>,
        routing: Routing,
        plaintext: &[u8],
        records: Vec<MetaRecord>,
    ) -> Result<ContentId, SendError> {
        let content = self.seal(from, &to, plaintext).await?;
        let submission = Submission {
            request: 0,
            from: from.clone(),
            kind,
            to,
            routing,
            content,
            records,
        };
        Ok(self.driver.submit(submission).await?)
    }

    /// The row that keeps what names a sent document (its DocumentId, code, date: the edXML
    /// `ResponseFor` of the statuses about it) beside its envelope: the payload is sealed
    /// for the recipients, so without it the sender could not say which document a status
    /// answers. Key `send/reference ‖ 0 ‖ content id`, value the [`Reference`] as CBOR.
    pub fn sent_record(document: &Document) -> Result<MetaRecord, SendError> {
        let reference = Reference {
            document_id: document.header.document_id.clone(),
            organ_id: document.header.from.organ_id.clone(),
            code: Some(format!(
                "{}/{}",
                document.header.code.number, document.header.code.notation
            )),
            promulgation_date: Some(document.header.promulgation.date.clone()),
        };
        Ok(MetaRecord::ValueFor {
            prefix: SENT_REFERENCE_PREFIX.to_vec(),
            value: cbor::to_canonical(&reference).map_err(DocumentError::from)?,
        })
    }

    /// The reference of a document this node sent (see [`sent_record`](Self::sent_record)),
    /// if it was recorded. Blocking.
    pub fn sent_reference(&self, id: &ContentId) -> Result<Option<Reference>, SendError> {
        let key = [SENT_REFERENCE_PREFIX, id.as_bytes()].concat();
        let Some(bytes) = self.store.get(Column::Meta, &key)? else {
            return Ok(None);
        };
        Ok(Some(
            cbor::from_canonical(&bytes, MAX_REFERENCE_LEN).map_err(DocumentError::from)?,
        ))
    }
}
