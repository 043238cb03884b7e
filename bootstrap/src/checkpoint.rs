//! Checkpoints of this node's log: issuing (C2SP tlog-checkpoint, signed with the log key),
//! persisting, serving the latest, and collecting witness cosignatures onto them.
//!
//! The checkpointer task wakes every `interval` and, when the durable tree grew since the
//! last checkpoint, signs one for the durable head and stores it (synced) **before**
//! publishing it: a checkpoint is only ever served once it survives a restart, and it only
//! ever covers durable entries. Because the note text holds no timestamp and Ed25519 is
//! deterministic, the checkpoint of a given size is the same bytes however often it is
//! signed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lienthong_protocol::rfc6962::ProofError;
use lienthong_protocol::signed_note::{Ed25519Signer, Note, NoteError};
use lienthong_protocol::tlog_checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use lienthong_protocol::tlog_cosignature::{CosignatureError, CosignerKey};
use tokio::sync::watch;

use crate::log::{Log, LogError, TreeHead};
use crate::store::{Family, Store, StoreError};

/// Why a checkpoint could not be issued or a cosignature not attached.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointIssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "stored checkpoint of size {size} does not verify with the configured log key: {source}"
    )]
    WrongKey {
        size: u64,
        #[source]
        source: CheckpointError,
    },
    #[error("stored checkpoint of size {size} has root that differs from the log's tree")]
    RootMismatch { size: u64 },
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Why a cosignature was refused.
#[derive(Debug, thiserror::Error)]
pub enum CosignRejected {
    #[error("not a signed note: {0}")]
    Note(#[from] NoteError),
    #[error("not a checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint origin {got:?} is not this log's ({want:?})")]
    WrongOrigin { got: String, want: String },
    #[error("this log issued no checkpoint of size {size}")]
    Unknown { size: u64 },
    #[error("checkpoint of size {size} differs from the one this log issued")]
    Mismatch { size: u64 },
    #[error("no cosignature from a configured witness")]
    NoKnownWitness,
    #[error(transparent)]
    Invalid(#[from] CosignatureError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// This log's checkpoints.
#[derive(Debug)]
pub struct Checkpoints {
    store: Arc<Store>,
    origin: String,
    signer: Ed25519Signer,
    witnesses: Vec<CosignerKey>,
    latest: watch::Sender<Option<Arc<SignedCheckpoint>>>,
    /// Serialises read-modify-write of stored notes (issuing, attaching cosignatures).
    update: Mutex<()>,
}

impl Checkpoints {
    /// Loads the latest stored checkpoint and checks it against the key and the tree. Blocks.
    pub fn open(
        log: &Log,
        origin: &str,
        signer: Ed25519Signer,
        witnesses: Vec<CosignerKey>,
    ) -> Result<Self, CheckpointIssueError> {
        let store = Arc::clone(log.store());
        let latest = match store.last(Family::Checkpoints)? {
            None => None,
            Some((_, bytes)) => {
                let c = SignedCheckpoint::parse(&bytes)?;
                let size = c.checkpoint().size();
                c.verify(&[&signer.verifier()])
                    .map_err(|source| CheckpointIssueError::WrongKey { size, source })?;
                if log.root_at(size)? != *c.checkpoint().root() {
                    return Err(CheckpointIssueError::RootMismatch { size });
                }
                Some(Arc::new(c))
            }
        };
        Ok(Self {
            store,
            origin: origin.to_owned(),
            signer,
            witnesses,
            latest: watch::channel(latest).0,
            update: Mutex::new(()),
        })
    }

    /// The origin line.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The latest checkpoint, with every cosignature received for it.
    #[must_use]
    pub fn latest(&self) -> Option<Arc<SignedCheckpoint>> {
        self.latest.borrow().clone()
    }

    /// A stored checkpoint of `size` with its cosignatures. Blocks.
    pub fn at_size(&self, size: u64) -> Result<Option<SignedCheckpoint>, CheckpointIssueError> {
        match self.store.get(Family::Checkpoints, &size.to_be_bytes())? {
            None => Ok(None),
            Some(b) => Ok(Some(SignedCheckpoint::parse(&b)?)),
        }
    }

    /// A receiver notified of each new latest checkpoint and cosignature.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<SignedCheckpoint>>> {
        self.latest.subscribe()
    }

    /// Waits (up to `timeout`) for a checkpoint covering leaf `index`.
    pub async fn wait_covering(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Option<Arc<SignedCheckpoint>> {
        let mut rx = self.subscribe();
        let wait = rx.wait_for(|c| c.as_ref().is_some_and(|c| c.checkpoint().size() > index));
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(c)) => c.clone(),
            _ => None,
        }
    }

    /// Signs and stores a checkpoint of `head` if it is newer than the latest. Blocks.
    pub fn issue(
        &self,
        head: TreeHead,
    ) -> Result<Option<Arc<SignedCheckpoint>>, CheckpointIssueError> {
        let _guard = self.update.lock().unwrap_or_else(|p| p.into_inner());
        if self
            .latest()
            .is_some_and(|c| c.checkpoint().size() >= head.size)
        {
            return Ok(None);
        }
        let signed = Checkpoint::new(&self.origin, head.size, head.root)?.sign(&self.signer)?;
        self.store.put_synced(
            Family::Checkpoints,
            &head.size.to_be_bytes(),
            &signed.to_bytes(),
        )?;
        let signed = Arc::new(signed);
        self.latest.send_replace(Some(Arc::clone(&signed)));
        tracing::debug!(origin = %self.origin, size = head.size, "checkpoint issued");
        Ok(Some(signed))
    }

    /// Attaches the cosignatures in `note` (a checkpoint note this log issued, carrying
    /// cosignature lines) from configured witnesses; returns how many were attached. Lines
    /// from unknown keys are ignored; a bad line from a known witness rejects the note.
    /// Blocks.
    pub fn add_cosignatures(&self, note: &[u8]) -> Result<usize, CosignRejected> {
        let note = Note::parse(note)?;
        let cp = Checkpoint::parse(note.text().as_bytes())?;
        if cp.origin() != self.origin {
            return Err(CosignRejected::WrongOrigin {
                got: cp.origin().to_owned(),
                want: self.origin.clone(),
            });
        }
        let size = cp.size();
        let _guard = self.update.lock().unwrap_or_else(|p| p.into_inner());
        let latest = self.latest();
        let mut stored = match latest.as_ref().filter(|c| c.checkpoint().size() == size) {
            Some(c) => (**c).clone(),
            None => match self.store.get(Family::Checkpoints, &size.to_be_bytes())? {
                Some(b) => SignedCheckpoint::parse(&b)?,
                None => return Err(CosignRejected::Unknown { size }),
            },
        };
        if stored.note().text() != note.text() {
            return Err(CosignRejected::Mismatch { size });
        }
        let mut added = 0;
        for sig in note.signatures() {
            let Some(w) = self.witnesses.iter().find(|w| w.matches(sig)) else {
                continue;
            };
            w.verify(note.text(), sig)?;
            stored.note_mut().add_signature(sig.clone())?;
            added += 1;
        }
        if added == 0 {
            return Err(CosignRejected::NoKnownWitness);
        }
        self.store
            .put_synced(Family::Checkpoints, &size.to_be_bytes(), &stored.to_bytes())?;
        if latest.is_some_and(|c| c.checkpoint().size() == size) {
            self.latest.send_replace(Some(Arc::new(stored)));
        }
        Ok(added)
    }

    /// The checkpointer: every `interval`, a checkpoint if the tree grew. Runs until
    /// `shutdown` turns true.
    pub async fn run(
        self: Arc<Self>,
        log: Arc<Log>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let head = log.head();
            if self
                .latest()
                .is_some_and(|c| c.checkpoint().size() >= head.size)
            {
                continue;
            }
            let this = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || this.issue(head)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(origin = %self.origin, error = %e,
                    "issuing a checkpoint failed"),
                Err(e) => tracing::error!(origin = %self.origin, error = %e,
                    "checkpoint task failed"),
            }
        }
    }
}
