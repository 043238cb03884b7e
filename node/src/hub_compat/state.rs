//! The listener's durable state, in column `meta` under `hub/` (every write one fsynced
//! `WriteBatch` through [`Store::write`](crate::store::Store::write)):
//!
//! | key | value |
//! |---|---|
//! | `hub/cursor\0` tenant | next inbox position indexed (u64 BE) |
//! | `hub/pending\0` tenant `\0` `e`\|`s` position (u64 BE) | [`Pending`]: a received document (`e`) or status (`s`) not yet acknowledged `done` |
//! | `hub/tx\0` tenant `\0` content id | its `hub/pending` key |
//! | `hub/recv\0` tenant `\0` sender `\0` DocumentId | content id of the received document |
//! | `hub/sent\0` content id | [`Sent`]: what the sender's DMS sent through the listener |
//! | `hub/sent-by\0` tenant `\0` (u64::MAX − ms, BE) content id | empty: sent documents, newest first |
//!
//! The inbox is indexed lazily, before each call that reads or acknowledges, from the
//! tenant's cursor on, a bounded page at a time; each page's rows and the cursor move in
//! one batch, under one lock (so an acknowledgement never races an indexing of the same
//! entry). `hub/pending` and `hub/tx` hold only what is not yet acknowledged `done`: the
//! state grows with what the DMS has not taken, not with history. `hub/recv` maps the
//! DocumentIds that status edXML names to content ids, as `seen` maps envelopes.

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::cbor;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::Document;
use lienthong_protocol::envelope::Kind;
use lienthong_protocol::relay::MetaRecord;
use lienthong_protocol::relay::records::{agency_seq_key, split_agency_seq_key};
use lienthong_protocol::relay::store::Column;
use serde::{Deserialize, Serialize};

use super::reply::HubError;
use crate::api::ApiState;
use crate::driver::now_ms;
use crate::store::WriteOp;

/// Inbox entries indexed per batch.
const INDEX_PAGE: usize = 128;
/// Batches per call: a backlog larger than this is indexed over several calls.
const INDEX_ROUNDS: usize = 8;
/// Largest hub record.
const MAX_RECORD: usize = 64 * 1024;

/// Which list an inbox entry belongs to (`XroadVnpt-messagetype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Documents (`edoc`).
    Edoc,
    /// Statuses (`status`).
    Status,
}

impl Stream {
    fn byte(self) -> u8 {
        match self {
            Self::Edoc => b'e',
            Self::Status => b's',
        }
    }

    /// The SDK's `messagetype`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Edoc => "edoc",
            Self::Status => "status",
        }
    }
}

/// A received transmission not yet acknowledged `done`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub id: ContentId,
    pub from: AgencyId,
    pub created_ms: u64,
    /// `processing` or `fail`, once acknowledged so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub updated_ms: u64,
}

/// A document sent through the listener, as its sender's DMS knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sent {
    pub tenant: AgencyId,
    pub document_id: String,
    pub subject: String,
    /// `Number/Notation`.
    pub notation: String,
    /// `YYYY-MM-DD`.
    pub promulgation_date: String,
    pub sent_ms: u64,
}

fn sent(tenant: &AgencyId, document: &Document, sent_ms: u64) -> Sent {
    let header = &document.header;
    Sent {
        tenant: tenant.clone(),
        document_id: header.document_id.clone(),
        subject: header.subject.clone(),
        notation: format!("{}/{}", header.code.number, header.code.notation),
        promulgation_date: header.promulgation.date.clone(),
        sent_ms,
    }
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = b"hub/".to_vec();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(0);
        }
        key.extend_from_slice(part);
    }
    key
}

fn cursor_key(tenant: &AgencyId) -> Vec<u8> {
    key(&[b"cursor", tenant.as_str().as_bytes()])
}

/// How many pending entries a filtered list may read per entry it can return.
pub const PENDING_SCAN_FACTOR: usize = 10;

fn pending_prefix(tenant: &AgencyId, stream: Stream) -> Vec<u8> {
    let mut k = key(&[b"pending", tenant.as_str().as_bytes(), b""]);
    k.push(stream.byte());
    k
}

fn tx_key(tenant: &AgencyId, id: &ContentId) -> Vec<u8> {
    key(&[b"tx", tenant.as_str().as_bytes(), id.as_bytes()])
}

fn recv_key(tenant: &AgencyId, sender: &AgencyId, document_id: &str) -> Vec<u8> {
    key(&[
        b"recv",
        tenant.as_str().as_bytes(),
        sender.as_str().as_bytes(),
        document_id.as_bytes(),
    ])
}

fn sent_key(id: &ContentId) -> Vec<u8> {
    key(&[b"sent", id.as_bytes()])
}

fn sent_by_prefix(tenant: &AgencyId) -> Vec<u8> {
    key(&[b"sent-by", tenant.as_str().as_bytes(), b""])
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, HubError> {
    cbor::to_canonical(value).map_err(HubError::internal)
}

fn decode<T: Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, HubError> {
    cbor::from_canonical(bytes, MAX_RECORD).map_err(HubError::internal)
}

fn content_id(bytes: &[u8]) -> Result<ContentId, HubError> {
    bytes
        .try_into()
        .map(ContentId)
        .map_err(|_| HubError::internal("corrupt content id in a hub record"))
}

/// The listener's durable state over the node's store.
#[derive(Debug)]
pub struct HubState {
    api: ApiState,
    /// Held while indexing or acknowledging.
    lock: tokio::sync::Mutex<()>,
}

impl HubState {
    pub fn new(api: ApiState) -> Self {
        Self {
            api,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The API internals this state reads through.
    pub fn api(&self) -> &ApiState {
        &self.api
    }

    /// Indexes `tenant`'s inbox from its cursor on (bounded rounds).
    async fn index(&self, tenant: &AgencyId) -> Result<(), HubError> {
        for _ in 0..INDEX_ROUNDS {
            let who = tenant.clone();
            let (ops, more) = self
                .api
                .blocking(move |s| Ok(index_page(s, &who)))
                .await??;
            if ops.is_empty() {
                return Ok(());
            }
            self.api.inner.store.write(ops).await?;
            if !more {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Indexes `tenant`'s inbox (see the module documentation).
    pub async fn catch_up(&self, tenant: &AgencyId) -> Result<(), HubError> {
        let _held = self.lock.lock().await;
        self.index(tenant).await
    }

    /// At most `limit` pending entries of `tenant` in `stream`, oldest first.
    ///
    /// Only entries for which `keep` holds are returned, filtered while reading: at most
    /// `limit` of them, out of at most [`PENDING_SCAN_FACTOR`] × `limit` entries read.
    pub async fn pending(
        &self,
        tenant: &AgencyId,
        stream: Stream,
        limit: usize,
        keep: impl Fn(&Pending) -> bool,
    ) -> Result<Vec<Pending>, HubError> {
        self.catch_up(tenant).await?;
        let prefix = pending_prefix(tenant, stream);
        let budget = limit.saturating_mul(PENDING_SCAN_FACTOR);
        let rows = self
            .api
            .blocking(move |s| {
                Ok(s.inner
                    .store
                    .scan_prefix_limit(Column::Meta, &prefix, budget)?)
            })
            .await?;
        let mut kept = Vec::new();
        for (_, value) in &rows {
            let entry: Pending = decode(value)?;
            if keep(&entry) {
                kept.push(entry);
                if kept.len() == limit {
                    break;
                }
            }
        }
        Ok(kept)
    }

    /// How many entries of `tenant` in `stream` are pending (counted up to `cap`).
    pub async fn count(
        &self,
        tenant: &AgencyId,
        stream: Stream,
        cap: usize,
    ) -> Result<usize, HubError> {
        self.catch_up(tenant).await?;
        let prefix = pending_prefix(tenant, stream);
        Ok(self
            .api
            .blocking(move |s| {
                Ok(s.inner
                    .store
                    .scan_prefix_limit(Column::Meta, &prefix, cap)?)
            })
            .await?
            .len())
    }

    /// Acknowledges `id` for `tenant`: `done` removes it from the lists, `processing` and
    /// `fail` keep it listed with that status. `Ok(false)` when `tenant` holds no such
    /// pending entry (never received, or already done).
    pub async fn acknowledge(
        &self,
        tenant: &AgencyId,
        id: ContentId,
        status: &str,
        description: Option<String>,
    ) -> Result<bool, HubError> {
        let _held = self.lock.lock().await;
        self.index(tenant).await?;
        let tx = tx_key(tenant, &id);
        let lookup = tx.clone();
        let found = self
            .api
            .blocking(move |s| {
                let Some(pending_key) = s.inner.store.get(Column::Meta, &lookup)? else {
                    return Ok(None);
                };
                let value = s.inner.store.get(Column::Meta, &pending_key)?;
                Ok(Some((pending_key, value)))
            })
            .await?;
        let Some((pending_key, value)) = found else {
            return Ok(false);
        };
        let ops = if status == "done" {
            vec![
                WriteOp::Delete {
                    family: Column::Meta,
                    key: pending_key,
                },
                WriteOp::Delete {
                    family: Column::Meta,
                    key: tx,
                },
            ]
        } else {
            let Some(value) = value else {
                return Err(HubError::internal("hub/tx names a missing pending entry"));
            };
            let mut pending: Pending = decode(&value)?;
            pending.ack = Some(status.to_owned());
            pending.description = description;
            pending.updated_ms = now_ms();
            vec![WriteOp::Put {
                family: Column::Meta,
                key: pending_key,
                value: encode(&pending)?,
            }]
        };
        self.api.inner.store.write(ops).await?;
        Ok(true)
    }

    /// The content id of the document `sender` sent `tenant` with this DocumentId, once
    /// indexed.
    pub async fn received(
        &self,
        tenant: &AgencyId,
        sender: &AgencyId,
        document_id: &str,
    ) -> Result<Option<ContentId>, HubError> {
        self.catch_up(tenant).await?;
        let k = recv_key(tenant, sender, document_id);
        let value = self
            .api
            .blocking(move |s| Ok(s.inner.store.get(Column::Meta, &k)?))
            .await?;
        value.map(|v| content_id(&v)).transpose()
    }

    /// The rows recording a document `tenant` is sending, for the envelope's own batch
    /// ([`MetaRecord`]s: `hub/sent ‖ id` and the `hub/sent-by` index entry).
    pub fn sent_records(
        &self,
        tenant: &AgencyId,
        document: &Document,
    ) -> Result<Vec<MetaRecord>, HubError> {
        let sent_ms = now_ms();
        let record = sent(tenant, document, sent_ms);
        let mut by = sent_by_prefix(tenant);
        by.extend_from_slice(&(u64::MAX - sent_ms).to_be_bytes());
        Ok(vec![
            MetaRecord::ValueFor {
                prefix: key(&[b"sent", b""]),
                value: encode(&record)?,
            },
            MetaRecord::ValueFor {
                prefix: by,
                value: Vec::new(),
            },
        ])
    }

    /// Records a document `tenant` sent as `id` (idempotent): for documents first sent
    /// through the API, whose envelope's batch had no listener rows.
    pub async fn record_sent(
        &self,
        tenant: &AgencyId,
        id: ContentId,
        document: &Document,
    ) -> Result<(), HubError> {
        let sent_ms = now_ms();
        let record = sent(tenant, document, sent_ms);
        let existing = self.sent(id).await?;
        if existing.is_some() {
            return Ok(());
        }
        let mut by = sent_by_prefix(tenant);
        by.extend_from_slice(&(u64::MAX - sent_ms).to_be_bytes());
        by.extend_from_slice(id.as_bytes());
        self.api
            .inner
            .store
            .write(vec![
                WriteOp::Put {
                    family: Column::Meta,
                    key: sent_key(&id),
                    value: encode(&record)?,
                },
                WriteOp::Put {
                    family: Column::Meta,
                    key: by,
                    value: Vec::new(),
                },
            ])
            .await?;
        Ok(())
    }

    /// What the listener recorded of sent document `id`.
    pub async fn sent(&self, id: ContentId) -> Result<Option<Sent>, HubError> {
        let k = sent_key(&id);
        let value = self
            .api
            .blocking(move |s| Ok(s.inner.store.get(Column::Meta, &k)?))
            .await?;
        value.map(|v| decode(&v)).transpose()
    }

    /// The `limit` documents `tenant` sent through the listener most recently, newest
    /// first.
    pub async fn sent_by(
        &self,
        tenant: &AgencyId,
        limit: usize,
    ) -> Result<Vec<ContentId>, HubError> {
        let prefix = sent_by_prefix(tenant);
        let rows = self
            .api
            .blocking(move |s| {
                Ok(s.inner
                    .store
                    .scan_prefix_limit(Column::Meta, &prefix, limit)?)
            })
            .await?;
        rows.iter()
            .map(|(k, _)| {
                let tail = k.len().checked_sub(32).and_then(|at| k.get(at..));
                content_id(tail.unwrap_or_default())
            })
            .collect()
    }
}

/// One page of `tenant`'s inbox from its cursor: the rows to write (pending entries,
/// their `hub/tx`, the DocumentId index, the new cursor) and whether more may follow.
/// Blocking.
fn index_page(s: &ApiState, tenant: &AgencyId) -> Result<(Vec<WriteOp>, bool), HubError> {
    let store = &s.inner.store;
    let cursor = match store.get(Column::Meta, &cursor_key(tenant))? {
        Some(v) => u64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| HubError::internal("corrupt hub cursor"))?,
        ),
        None => 0,
    };
    let mut prefix = tenant.as_str().as_bytes().to_vec();
    prefix.push(0);
    let rows = store.scan_range(
        Column::Inbox,
        &prefix,
        &agency_seq_key(tenant, cursor),
        INDEX_PAGE,
    )?;
    let more = rows.len() == INDEX_PAGE;
    let mut ops = Vec::with_capacity(rows.len() * 3 + 1);
    let mut next = cursor;
    for (k, v) in rows {
        let Some((_, position)) = split_agency_seq_key(&k) else {
            continue;
        };
        let id = content_id(&v)?;
        let Some(env) = s.envelope(&id)? else {
            return Err(HubError::internal(format!(
                "inbox entry {position} names missing envelope {id}"
            )));
        };
        let body = env.body();
        let stream = match body.kind {
            kind if kind.is_document() => Stream::Edoc,
            Kind::Status => Stream::Status,
            _ => {
                next = position.saturating_add(1);
                continue;
            }
        };
        if stream == Stream::Edoc {
            match s.open_document(&id, tenant) {
                Ok((_, document)) => ops.push(WriteOp::Put {
                    family: Column::Meta,
                    key: recv_key(tenant, &body.from, &document.header.document_id),
                    value: id.as_bytes().to_vec(),
                }),
                // Not openable yet (its payload still coming): index it on a later call.
                Err(p) if p.status == 503 => break,
                // Opening failed for good (logged): still list it, so the DMS sees it.
                Err(_) => {}
            }
        }
        let mut pending_key = pending_prefix(tenant, stream);
        pending_key.extend_from_slice(&position.to_be_bytes());
        let pending = Pending {
            id,
            from: body.from.clone(),
            created_ms: body.created_ms,
            ack: None,
            description: None,
            updated_ms: body.created_ms,
        };
        ops.push(WriteOp::Put {
            family: Column::Meta,
            key: pending_key.clone(),
            value: encode(&pending)?,
        });
        ops.push(WriteOp::Put {
            family: Column::Meta,
            key: tx_key(tenant, &id),
            value: pending_key,
        });
        next = position.saturating_add(1);
    }
    if next == cursor {
        return Ok((Vec::new(), false));
    }
    ops.push(WriteOp::Put {
        family: Column::Meta,
        key: cursor_key(tenant),
        value: next.to_be_bytes().to_vec(),
    });
    Ok((ops, more))
}

/// What the listener recorded of sent document `id`. Blocking.
pub fn sent_blocking(s: &ApiState, id: &ContentId) -> Result<Option<Sent>, HubError> {
    s.inner
        .store
        .get(Column::Meta, &sent_key(id))?
        .map(|v| decode(&v))
        .transpose()
}
