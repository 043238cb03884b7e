//! The checkpoints held, one per log, and the split-view check every new one goes through.
//!
//! `Meta` keys: `ledger/checkpoint/<log>` → the latest verified signed checkpoint;
//! `ledger/alarm/<log>` ‖ 0x00 ‖ SHA-256(held ‖ conflicting) → [`Alarm`] (JSON), so the
//! same evidence seen twice (gossip repeats) is one alarm.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use lienthong_protocol::relay::store::Column;
use lienthong_protocol::rfc6962::{self, Hash};
use lienthong_protocol::tlog_checkpoint::SignedCheckpoint;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::{LedgerError, LogInfo};
use crate::driver::now_ms;
use crate::store::{Store, StoreError, WriteOp};

const CHECKPOINT_PREFIX: &[u8] = b"ledger/checkpoint/";
const ALARM_PREFIX: &[u8] = b"ledger/alarm/";

/// The `Meta` key of a log's latest verified checkpoint.
pub(super) fn checkpoint_key(log: &str) -> Vec<u8> {
    [CHECKPOINT_PREFIX, log.as_bytes()].concat()
}

/// What kind of conflict a log's checkpoints showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmKind {
    /// Two checkpoints of the same size with different roots.
    SplitView,
    /// Two checkpoints of different sizes that no consistency proof reconciles.
    Inconsistent,
}

/// Evidence that a log showed different histories: both signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub kind: AlarmKind,
    /// The central node's name.
    pub log: String,
    /// The checkpoint held (signed note text).
    pub held: String,
    /// The conflicting checkpoint (signed note text).
    pub conflicting: String,
    /// Where the conflicting one came from (`fetch`, `gossip`, …).
    pub source: String,
    /// When it was noticed (ms since the Unix epoch).
    pub at_ms: u64,
}

impl Alarm {
    fn key(&self) -> Vec<u8> {
        let digest = Sha256::new()
            .chain_update(self.held.as_bytes())
            .chain_update(self.conflicting.as_bytes())
            .finalize();
        [ALARM_PREFIX, self.log.as_bytes(), &[0], digest.as_slice()].concat()
    }
}

/// How a checkpoint relates to the one held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Newer and proven consistent (or the first one): now held.
    New,
    /// The same tree as the one held.
    Known,
    /// Older and proven consistent with the one held.
    Older,
    /// Conflicting: the evidence.
    Alarm(Alarm),
    /// Of another size than the one held, and no consistency proof was asked for now
    /// (rate limit on gossip-triggered requests): validly signed, not held.
    Unchecked,
}

/// The latest verified checkpoint per log. Each log's slot is locked while a checkpoint is
/// checked against it (including the consistency proof request), so checks of one log
/// are serialised and the slot only ever moves forward.
#[derive(Debug)]
pub(super) struct Book {
    store: Store,
    held: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<SignedCheckpoint>>>>>,
}

impl Book {
    /// The checkpoints stored for `logs` (one that no longer verifies is dropped). Blocking.
    pub(super) fn load(store: &Store, logs: &[LogInfo]) -> Result<Self, StoreError> {
        let mut held = HashMap::new();
        for log in logs {
            let cp = store
                .get(Column::Meta, &checkpoint_key(&log.name))?
                .and_then(|bytes| SignedCheckpoint::open(&bytes, &log.verifier).ok());
            held.insert(log.name.clone(), Arc::new(Mutex::new(cp)));
        }
        Ok(Self {
            store: store.clone(),
            held: std::sync::Mutex::new(held),
        })
    }

    fn slot(&self, log: &str) -> Arc<Mutex<Option<SignedCheckpoint>>> {
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(held.entry(log.to_owned()).or_default())
    }

    /// The checkpoint held for `log`.
    pub(super) async fn held(&self, log: &str) -> Option<SignedCheckpoint> {
        self.slot(log).lock().await.clone()
    }

    /// Checks `cp` (signature verified by the caller) against the checkpoint held for
    /// `log`, asking `proof(old, new)` for a consistency proof when the sizes differ
    /// (`None`: not now); a newer consistent one is persisted and held. An alarm is
    /// returned, not stored.
    pub(super) async fn observe<F, Fut>(
        &self,
        log: &LogInfo,
        cp: SignedCheckpoint,
        source: &str,
        proof: F,
    ) -> Result<Observation, LedgerError>
    where
        F: FnOnce(u64, u64) -> Fut,
        Fut: Future<Output = Result<Option<Vec<Hash>>, LedgerError>>,
    {
        let slot = self.slot(&log.name);
        let mut held = slot.lock().await;
        let new = cp.checkpoint();
        let alarm = |kind, h: &SignedCheckpoint| {
            Observation::Alarm(Alarm {
                kind,
                log: log.name.clone(),
                held: String::from_utf8_lossy(&h.to_bytes()).into_owned(),
                conflicting: String::from_utf8_lossy(&cp.to_bytes()).into_owned(),
                source: source.to_owned(),
                at_ms: now_ms(),
            })
        };
        let observation = match held.as_ref() {
            None => Observation::New,
            Some(h) => {
                let old = h.checkpoint();
                if new.size() == old.size() {
                    if new.root() == old.root() {
                        Observation::Known
                    } else {
                        alarm(AlarmKind::SplitView, h)
                    }
                } else {
                    // The smaller tree must be a prefix of the larger, whichever is new.
                    let newer = new.size() > old.size();
                    let (lo, hi) = if newer { (old, new) } else { (new, old) };
                    let Some(p) = proof(lo.size(), hi.size()).await? else {
                        return Ok(Observation::Unchecked);
                    };
                    match rfc6962::verify_consistency(
                        lo.size(),
                        hi.size(),
                        lo.root(),
                        hi.root(),
                        &p,
                    ) {
                        Ok(()) if newer => Observation::New,
                        Ok(()) => Observation::Older,
                        Err(_) => alarm(AlarmKind::Inconsistent, h),
                    }
                }
            }
        };
        if observation == Observation::New {
            self.store
                .write(vec![WriteOp::Put {
                    family: Column::Meta,
                    key: checkpoint_key(&log.name),
                    value: cp.to_bytes(),
                }])
                .await?;
            *held = Some(cp);
        }
        Ok(observation)
    }

    /// Stores an alarm; false if the same evidence was already stored.
    pub(super) async fn record(&self, alarm: &Alarm) -> Result<bool, StoreError> {
        let key = alarm.key();
        let exists = {
            let key = key.clone();
            self.store
                .read(move |s| s.get(Column::Meta, &key))
                .await?
                .is_some()
        };
        if exists {
            return Ok(false);
        }
        let value = serde_json::to_vec(alarm).unwrap_or_default();
        self.store
            .write(vec![WriteOp::Put {
                family: Column::Meta,
                key,
                value,
            }])
            .await?;
        Ok(true)
    }

    /// Every stored alarm. Blocking.
    pub(super) fn alarms(store: &Store) -> Result<Vec<Alarm>, StoreError> {
        Ok(store
            .scan_prefix(Column::Meta, ALARM_PREFIX)?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use lienthong_protocol::rfc6962::MemoryTree;
    use lienthong_protocol::signed_note::Ed25519Signer;

    use super::*;

    const ORIGIN: &str = "test/c0";

    fn signer() -> Ed25519Signer {
        Ed25519Signer::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    fn log() -> LogInfo {
        LogInfo {
            name: "c0".into(),
            origin: ORIGIN.into(),
            url: "http://127.0.0.1:1".into(),
            verifier: signer().verifier(),
        }
    }

    fn signed(size: u64, root: Hash) -> SignedCheckpoint {
        lienthong_protocol::tlog_checkpoint::Checkpoint::new(ORIGIN, size, root)
            .unwrap()
            .sign(&signer())
            .unwrap()
    }

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.push_entry(&i.to_be_bytes());
        }
        t
    }

    /// Observes `cp` with consistency proofs taken from `honest`.
    async fn observe(book: &Book, cp: SignedCheckpoint, honest: &MemoryTree) -> Observation {
        book.observe(&log(), cp, "test", |old, new| {
            let proof = honest.consistency_proof(old, new);
            async move { Ok(Some(proof.unwrap())) }
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_move_forward_only_with_consistency_and_conflicts_are_alarms() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let book = Book::load(&store, &[log()]).unwrap();
        let t = tree(10);
        let at = |n: u64| signed(n, t.root_at(n).unwrap());

        assert_eq!(observe(&book, at(4), &t).await, Observation::New);
        assert_eq!(observe(&book, at(4), &t).await, Observation::Known);
        assert_eq!(observe(&book, at(9), &t).await, Observation::New);
        assert_eq!(observe(&book, at(6), &t).await, Observation::Older);
        assert_eq!(book.held("c0").await.unwrap(), at(9));

        // Same size, other root: a split view, and what is held does not change.
        let forked = tree(9);
        let mut other = forked.root();
        other[0] ^= 1;
        let Observation::Alarm(alarm) = observe(&book, signed(9, other), &t).await else {
            panic!("a split view is an alarm");
        };
        assert_eq!(alarm.kind, AlarmKind::SplitView);
        assert_eq!(alarm.held.as_bytes(), at(9).to_bytes());
        assert_eq!(alarm.conflicting.as_bytes(), signed(9, other).to_bytes());
        assert_eq!(book.held("c0").await.unwrap(), at(9));

        // A bigger tree that does not extend the one held: inconsistent.
        let mut bad = tree(3);
        for i in 3..12u64 {
            bad.push_entry(&(i + 100).to_be_bytes());
        }
        let Observation::Alarm(alarm) = observe(&book, signed(12, bad.root()), &bad).await else {
            panic!("an inconsistent checkpoint is an alarm");
        };
        assert_eq!(alarm.kind, AlarmKind::Inconsistent);
        assert!(book.record(&alarm).await.unwrap());
        assert!(
            !book.record(&alarm).await.unwrap(),
            "the same evidence once"
        );
        let alarms = store.read(Book::alarms).await.unwrap();
        assert_eq!(alarms, vec![alarm]);

        // No proof now: neither held nor an alarm.
        let unchecked = book
            .observe(&log(), at(10), "gossip", |_, _| async { Ok(None) })
            .await
            .unwrap();
        assert_eq!(unchecked, Observation::Unchecked);
        assert_eq!(book.held("c0").await.unwrap(), at(9));

        // The checkpoint held survives a restart.
        drop(book);
        let book = Book::load(&store, &[log()]).unwrap();
        assert_eq!(book.held("c0").await.unwrap(), at(9));
        drop(book);
        tokio::task::spawn_blocking(move || drop(store))
            .await
            .unwrap();
    }
}
