//! The durable append-only log: one RFC 6962 Merkle tree of ledger entries per central node.
//!
//! # Writes
//! [`Log::append`] decodes and checks the entry on the caller's task (size limit, canonical
//! encoding: [`LedgerEntry::decode`]), then queues it for the writer thread (see
//! `writer.rs`): many concurrent appends share one fsync (group commit), and an append
//! resolves only once its entry is durable. The queue is bounded: when it is full, `append`
//! waits (backpressure). An entry whose dedupe key ([`LedgerEntry::key`]: the envelope's
//! content id) is already in the log is not appended again: the receipt gives the existing
//! index with `duplicate: true`.
//!
//! # Reads
//! Tiles, entry bundles and proofs are read from the stored tiles ([`Log::tile`],
//! [`Log::inclusion_proof`], [`Log::consistency_proof`]); these calls block on RocksDB and
//! belong on the blocking pool. Proofs are answered only for sizes up to the durable size.
//!
//! # Restart
//! [`Log::open`] restores the [`TreeBuilder`] from its stored frontier and the tile edge
//! from the stored partial tiles, then checks the restored root against the tiles.

mod tiles;
mod writer;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lienthong_protocol::ledger::{LedgerEntry, LedgerError};
use lienthong_protocol::rfc6962::{self, HASH_SIZE, Hash, HashSource, ProofError, TreeBuilder};
use lienthong_protocol::roster::SignedRoster;
use lienthong_protocol::tlog_tiles::{
    self, TILE_WIDTH, TileError, TileId, TileKind, encode_entry_bundle, tile_for_node,
};
use serde::Serialize;
use sha2::Digest;
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{Family, Store, StoreError, be_u64, tile_key};
use writer::{Append, Job, Shared, Writer};

/// Tuning of the log.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Appends that may wait in the queue before `append` waits for room.
    pub queue_capacity: usize,
    /// Most entries written by one synced write.
    pub max_group: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 16_384,
            max_group: 4_096,
        }
    }
}

/// What an append returns once the entry is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The entry's leaf index.
    pub index: u64,
    /// Whether the entry was already in the log (and `index` is where it was found).
    pub duplicate: bool,
}

/// A signed roster checked by [`Log::prepare_roster`].
#[derive(Debug, Clone)]
pub struct RosterSubmission {
    entry: Vec<u8>,
    key: [u8; 32],
    /// The roster's epoch.
    pub epoch: u64,
    roster: Vec<u8>,
}

/// The durable tree: size and root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    pub size: u64,
    pub root: Hash,
}

/// Counters of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogStats {
    pub groups: u64,
    pub appended: u64,
    pub duplicates: u64,
    pub failed: bool,
}

/// Why an append or a read failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid entry: {0}")]
    Invalid(#[from] LedgerError),
    #[error("invalid roster: {0}")]
    Roster(String),
    #[error("roster epoch {epoch} is already stored with different bytes")]
    RosterConflict { epoch: u64 },
    #[error("the log has stopped accepting appends after a failed write; restart the node")]
    Stopped,
    #[error("synced write failed: {0}")]
    Write(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tree size {asked} is beyond the log's size {size}")]
    BeyondSize { asked: u64, size: u64 },
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error(transparent)]
    Tile(#[from] TileError),
}

/// One central node's log.
#[derive(Debug)]
pub struct Log {
    store: Arc<Store>,
    queue: mpsc::Sender<Job>,
    head: watch::Receiver<TreeHead>,
    shared: Arc<Shared>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Log {
    /// Opens the log in `store`, restores its tree and starts the writer thread. Blocks.
    pub fn open(store: Arc<Store>, config: LogConfig) -> Result<Self, LogError> {
        let tree = match store.get(Family::Meta, writer::TREE_KEY)? {
            Some(bytes) => writer::decode_tree(&store, &bytes)?,
            None => TreeBuilder::new(),
        };
        let edge = tiles::TileEdge::restore(&store, tree.size())?;
        let head = TreeHead {
            size: tree.size(),
            root: tree.root(),
        };
        // The frontier and the tiles are written together; check they agree.
        let from_tiles = rfc6962::root(&StoredTiles::new(&store, head.size), head.size)?;
        if from_tiles != head.root {
            return Err(store
                .corrupt("the stored tiles do not hash to the stored frontier's root")
                .into());
        }
        let (head_tx, head_rx) = watch::channel(head);
        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared::default());
        let w = Writer {
            store: Arc::clone(&store),
            tree,
            edge,
            head: head_tx,
            shared: Arc::clone(&shared),
            config,
        };
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| LogError::Write(format!("spawning the writer thread: {e}")))?;
        tracing::info!(path = %store.path().display(), size = head.size, "log opened");
        Ok(Self {
            store,
            queue,
            head: head_rx,
            shared,
            writer: std::sync::Mutex::new(Some(handle)),
        })
    }

    /// The database.
    #[must_use]
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Appends entry bytes (checked with [`LedgerEntry::decode`]); resolves once durable.
    pub async fn append(&self, entry: Vec<u8>) -> Result<Receipt, LogError> {
        let key = LedgerEntry::decode(&entry)?.key();
        self.enqueue(entry, *key.as_bytes(), None).await
    }

    /// Checks a signed roster for [`Log::append_roster`]: it must decode and validate, and
    /// not conflict with a stored roster of the same epoch. Its root signatures are recorded
    /// in the entry; checking them against the roster in force is the roster ceremony's and
    /// the auditor's job. Blocks (decoding a large roster is real work).
    pub fn prepare_roster(&self, roster_bytes: &[u8]) -> Result<RosterSubmission, LogError> {
        let signed =
            SignedRoster::decode(roster_bytes).map_err(|e| LogError::Roster(e.to_string()))?;
        let roster = signed
            .roster()
            .map_err(|e| LogError::Roster(e.to_string()))?;
        let entry = LedgerEntry::roster(&signed, roster.epoch);
        // Store the canonical encoding (what `/roster/<epoch>` serves).
        let canonical = signed
            .to_bytes()
            .map_err(|e| LogError::Roster(e.to_string()))?;
        if let Some(existing) = self.roster(roster.epoch)?
            && sha2::Sha256::digest(&existing) != sha2::Sha256::digest(&canonical)
        {
            return Err(LogError::RosterConflict {
                epoch: roster.epoch,
            });
        }
        let bytes = entry.to_bytes();
        let key = *LedgerEntry::decode(&bytes)?.key().as_bytes();
        Ok(RosterSubmission {
            entry: bytes,
            key,
            epoch: roster.epoch,
            roster: canonical,
        })
    }

    /// Stores a checked signed roster and appends its ledger entry, in one durable write.
    pub async fn append_roster(&self, sub: RosterSubmission) -> Result<Receipt, LogError> {
        self.enqueue(sub.entry, sub.key, Some((sub.epoch, sub.roster)))
            .await
    }

    async fn enqueue(
        &self,
        entry: Vec<u8>,
        key: [u8; 32],
        roster: Option<(u64, Vec<u8>)>,
    ) -> Result<Receipt, LogError> {
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LogError::Stopped);
        }
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Job::Append(Append {
                entry,
                key,
                roster,
                reply,
            }))
            .await
            .map_err(|_| LogError::Stopped)?;
        rx.await.map_err(|_| LogError::Stopped)?
    }

    /// The durable tree head.
    #[must_use]
    pub fn head(&self) -> TreeHead {
        *self.head.borrow()
    }

    /// A receiver of durable tree heads.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<TreeHead> {
        self.head.clone()
    }

    /// The writer's counters.
    #[must_use]
    pub fn stats(&self) -> LogStats {
        LogStats {
            groups: self.shared.groups.load(Ordering::Relaxed),
            appended: self.shared.appended.load(Ordering::Relaxed),
            duplicates: self.shared.duplicates.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Acquire),
        }
    }

    fn check_size(&self, size: u64) -> Result<(), LogError> {
        let durable = self.head().size;
        if size > durable {
            return Err(LogError::BeyondSize {
                asked: size,
                size: durable,
            });
        }
        Ok(())
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves. Blocks.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(size)?;
        Ok(rfc6962::inclusion_proof(
            &StoredTiles::new(&self.store, size),
            index,
            size,
        )?)
    }

    /// Consistency proof from `old` to `new` leaves. Blocks.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LogError> {
        self.check_size(new)?;
        Ok(rfc6962::consistency_proof(
            &StoredTiles::new(&self.store, new),
            old,
            new,
        )?)
    }

    /// Root of the tree of `size` leaves. Blocks.
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        self.check_size(size)?;
        Ok(rfc6962::root(&StoredTiles::new(&self.store, size), size)?)
    }

    /// Entry `index`, if durable. Blocks.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.store.get(Family::Entries, &index.to_be_bytes())?)
    }

    /// The index of the entry with dedupe key `key`, if present. Blocks.
    pub fn find(&self, key: &[u8; 32]) -> Result<Option<u64>, LogError> {
        Ok(self.store.get(Family::Index, key)?.and_then(|v| be_u64(&v)))
    }

    /// A stored signed roster. Blocks.
    pub fn roster(&self, epoch: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.store.get(Family::Rosters, &epoch.to_be_bytes())?)
    }

    /// The data of a hash tile or entry bundle, if the durable tree has it at that width.
    /// Blocks.
    pub fn tile(&self, id: &TileId) -> Result<Option<Vec<u8>>, LogError> {
        let size = self.head().size;
        let width = u64::from(id.width);
        let first = id.index.checked_mul(u64::from(TILE_WIDTH));
        match id.kind {
            TileKind::Entries => {
                let Some(end) = first.and_then(|f| f.checked_add(width)) else {
                    return Ok(None);
                };
                if end > size {
                    return Ok(None);
                }
                let from = first.unwrap_or(0).to_be_bytes();
                let rows = self
                    .store
                    .scan_from(Family::Entries, &from, usize::from(id.width))?;
                if rows.len() != usize::from(id.width) {
                    return Err(self
                        .store
                        .corrupt("entries missing below the tree size")
                        .into());
                }
                let entries: Vec<&[u8]> = rows.iter().map(|(_, v)| &**v).collect();
                Ok(Some(encode_entry_bundle(&entries)?))
            }
            TileKind::Hashes { level } => {
                let Some(have) = TileId::at_size(level, id.index, size) else {
                    return Ok(None);
                };
                if have.width < id.width {
                    return Ok(None);
                }
                let data = self
                    .store
                    .get(Family::Tiles, &tile_key(level, id.index))?
                    .unwrap_or_default();
                let len = usize::from(id.width) * HASH_SIZE;
                match data.get(..len) {
                    Some(d) => Ok(Some(d.to_vec())),
                    None => Err(self.store.corrupt(format!("tile {id} is short")).into()),
                }
            }
        }
    }

    /// Stops the writer after the queued appends and waits for it. Later appends fail with
    /// [`LogError::Stopped`].
    pub async fn close(&self) {
        let _ = self.queue.send(Job::Stop).await;
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Tile level and index.
type TileKey = (u8, u64);

/// A [`HashSource`] over the stored tiles of a tree of `size` leaves, caching the tiles it
/// reads (one proof touches a handful).
struct StoredTiles<'a> {
    store: &'a Store,
    size: u64,
    cache: RefCell<HashMap<TileKey, Option<Vec<u8>>>>,
}

impl<'a> StoredTiles<'a> {
    fn new(store: &'a Store, size: u64) -> Self {
        Self {
            store,
            size,
            cache: RefCell::new(HashMap::new()),
        }
    }
}

impl HashSource for StoredTiles<'_> {
    fn node(&self, level: u8, index: u64) -> Option<Hash> {
        let (tile, _, _) = tile_for_node(level, index, self.size).ok()?;
        let TileKind::Hashes { level: tl } = tile.kind else {
            return None;
        };
        let mut cache = self.cache.borrow_mut();
        let data = cache
            .entry((tl, tile.index))
            .or_insert_with(|| {
                self.store
                    .get(Family::Tiles, &tile_key(tl, tile.index))
                    .ok()
                    .flatten()
            })
            .as_deref()?;
        let width = u16::try_from(data.len() / HASH_SIZE).ok()?;
        let stored = TileId::hashes(tl, tile.index, width).ok()?;
        tlog_tiles::hash_from_tile(&stored, data, level, index).ok()
    }
}
