//! Reading what the store holds for a tenant: envelopes by content id, and sealed payloads
//! opened with the tenant's encryption secret (inline beside the envelope, or a stored
//! manifest and its chunks). Blocking: call through [`ApiState::blocking`].

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::Document;
use lienthong_protocol::envelope::{Payload, SignedEnvelope};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::seal::{self, MAX_MANIFEST_LEN, Manifest};
use lienthong_protocol::status::StatusDetail;

use super::ApiState;
use super::problem::Problem;

/// What a caller's tenant is to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Sender,
    Recipient,
}

impl ApiState {
    /// Runs blocking store reads and decryption off the async executor.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, Problem>
    where
        F: FnOnce(&ApiState) -> Result<T, Problem> + Send + 'static,
        T: Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || f(&state))
            .await
            .map_err(Problem::internal)?
    }

    /// As [`blocking`](Self::blocking), but runs `f` right here when the request body was
    /// small ([`is_small_body`](super::extract::is_small_body)): decoding, validating and sealing a small document takes
    /// tens of microseconds, less than the two thread switches of a hop to the blocking
    /// pool, and its one store read (the idempotency record, a point read answered from
    /// the memtable, the filters or the block cache) rarely waits on the disk.
    pub(crate) async fn blocking_unless_small<T, F>(&self, small: bool, f: F) -> Result<T, Problem>
    where
        F: FnOnce(&ApiState) -> Result<T, Problem> + Send + 'static,
        T: Send + 'static,
    {
        if small {
            f(self)
        } else {
            self.blocking(f).await
        }
    }

    /// The stored envelope `id`, if any. Blocking.
    pub(crate) fn envelope(&self, id: &ContentId) -> Result<Option<SignedEnvelope>, Problem> {
        let Some(bytes) = self.inner.store.get(Column::Envelopes, id.as_bytes())? else {
            return Ok(None);
        };
        SignedEnvelope::decode(&bytes)
            .map(Some)
            .map_err(|e| Problem::internal(format!("stored envelope {id} is corrupt: {e}")))
    }

    /// The document envelope `id` as `tenant` may see it: 404 when it does not exist, is not
    /// a document, or `tenant` is neither its sender nor a recipient. Blocking.
    pub(crate) fn document_envelope(
        &self,
        id: &ContentId,
        tenant: &AgencyId,
    ) -> Result<(SignedEnvelope, Party), Problem> {
        let not_found = || Problem::not_found(format!("no document {id} for agency {tenant}"));
        let env = self.envelope(id)?.ok_or_else(not_found)?;
        let body = env.body();
        if !body.kind.is_document() {
            return Err(not_found());
        }
        let party = if &body.from == tenant {
            Party::Sender
        } else if body.to.contains(tenant) {
            Party::Recipient
        } else {
            return Err(not_found());
        };
        Ok((env, party))
    }

    /// Opens `env`'s sealed payload for `me`. Blocking.
    pub(crate) fn open_payload(
        &self,
        env: &SignedEnvelope,
        me: &AgencyId,
    ) -> Result<Vec<u8>, Problem> {
        let secret =
            self.inner.tenants.get(me).ok_or_else(|| {
                Problem::forbidden(format!("agency {me} is not hosted on this node"))
            })?;
        let sender = &env.body().from;
        let corrupt = |e: &dyn std::fmt::Display| {
            Problem::internal(format!("payload of {} does not open: {e}", env.id()))
        };
        let (manifest, chunks) = match &env.body().payload {
            Payload::Inline { .. } => {
                let inline = env
                    .inline()
                    .ok_or_else(|| corrupt(&"inline payload missing"))?;
                let manifest = Manifest::decode(&inline.manifest).map_err(|e| corrupt(&e))?;
                (manifest, vec![inline.chunk])
            }
            Payload::External { manifest, .. } => {
                let bytes = self
                    .inner
                    .store
                    .get(Column::Payloads, manifest)?
                    .ok_or_else(|| {
                        Problem::unavailable(format!(
                            "the payload of {} is still being fetched",
                            env.id()
                        ))
                    })?;
                if bytes.len() > MAX_MANIFEST_LEN {
                    return Err(corrupt(&"manifest too large"));
                }
                let manifest = Manifest::decode(&bytes).map_err(|e| corrupt(&e))?;
                let mut chunks = Vec::with_capacity(manifest.chunks().len());
                for chunk in manifest.chunks() {
                    let data = self
                        .inner
                        .store
                        .get(Column::Chunks, chunk.as_bytes())?
                        .ok_or_else(|| corrupt(&format!("chunk {chunk} missing")))?;
                    chunks.push(data);
                }
                (manifest, chunks)
            }
            Payload::None | Payload::Roster(_) => return Ok(Vec::new()),
        };
        // The shared epoch cache is held only to unwrap the content key; decrypting (up to
        // tens of MiB) runs without it.
        let key = {
            let mut epochs = self
                .inner
                .epochs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            seal::unwrap_content_key(&manifest, sender, me, secret, &mut epochs)
                .map_err(|e| corrupt(&e))?
        };
        seal::open_with_key(&manifest, &key, &chunks).map_err(|e| corrupt(&e))
    }

    /// Opens the document `id` for `tenant` (a recipient). Blocking.
    pub(crate) fn open_document(
        &self,
        id: &ContentId,
        tenant: &AgencyId,
    ) -> Result<(SignedEnvelope, Document), Problem> {
        let (env, party) = self.document_envelope(id, tenant)?;
        if party == Party::Sender {
            return Err(Problem::forbidden(format!(
                "document {id} is sealed for its recipients; its sender keeps its own copy"
            )));
        }
        let plaintext = self.open_payload(&env, tenant)?;
        let document = Document::from_bytes(&plaintext)
            .map_err(|e| Problem::internal(format!("document {id} does not decode: {e}")))?;
        Ok((env, document))
    }

    /// The sealed detail of status envelope `id`, when `me` is one of its recipients and
    /// it carries one. Blocking; failures read as no detail.
    pub(crate) fn status_detail(&self, id: &ContentId, me: &AgencyId) -> Option<StatusDetail> {
        let env = self.envelope(id).ok().flatten()?;
        if !env.body().to.contains(me) || matches!(env.body().payload, Payload::None) {
            return None;
        }
        let plaintext = self.open_payload(&env, me).ok()?;
        StatusDetail::from_bytes(&plaintext).ok()
    }
}
