//! The writer thread: group commit.
//!
//! Appenders put [`Job`]s on one bounded queue. The thread takes the first job, drains
//! whatever else is queued (up to [`LogConfig::max_group`] entries), assigns leaf indices,
//! extends the tree and the tile edge, and writes the whole group (entries, dedupe index,
//! tiles, the new frontier) as **one** RocksDB `WriteBatch` with `sync = true`: one WAL
//! append, one fsync. Only then does it publish the new tree head and answer the group.
//!
//! Fail-stop: if the synced write fails the group gets the error and every later job gets
//! [`LogError::Stopped`]; the in-memory tree has run ahead of the disk and a retry after a
//! failed fsync can silently lose data, so the node must restart and recover from what is on
//! disk.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lienthong_protocol::rfc6962::{HASH_SIZE, TreeBuilder};
use rocksdb::WriteBatch;
use tokio::sync::{mpsc, oneshot, watch};

use super::tiles::TileEdge;
use super::{LogConfig, LogError, Receipt, TreeHead};
use crate::store::{Family, Store, StoreError, tile_key};

/// Key of the frontier row in `meta`.
pub(crate) const TREE_KEY: &[u8] = b"tree";

/// One queued append.
pub(crate) struct Append {
    pub(crate) entry: Vec<u8>,
    pub(crate) key: [u8; 32],
    /// A signed roster stored with the entry (its epoch and bytes).
    pub(crate) roster: Option<(u64, Vec<u8>)>,
    pub(crate) reply: oneshot::Sender<Result<Receipt, LogError>>,
}

pub(crate) enum Job {
    Append(Append),
    /// Finish the queued work and exit.
    Stop,
}

/// Counters shared with [`super::Log::stats`].
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) groups: AtomicU64,
    pub(crate) appended: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) failed: AtomicBool,
}

/// Encodes the frontier row: size, then the frontier hashes.
pub(crate) fn encode_tree(tree: &TreeBuilder) -> Vec<u8> {
    let mut v = tree.size().to_be_bytes().to_vec();
    for h in tree.frontier() {
        v.extend_from_slice(&h);
    }
    v
}

/// Decodes the frontier row.
pub(crate) fn decode_tree(store: &Store, bytes: &[u8]) -> Result<TreeBuilder, StoreError> {
    let bad = || store.corrupt("the tree frontier row is malformed");
    let (size, rest) = bytes.split_first_chunk::<8>().ok_or_else(bad)?;
    if rest.len() % HASH_SIZE != 0 {
        return Err(bad());
    }
    let hashes: Vec<_> = rest
        .chunks_exact(HASH_SIZE)
        .filter_map(|c| c.try_into().ok())
        .collect();
    TreeBuilder::from_frontier(u64::from_be_bytes(*size), &hashes).ok_or_else(bad)
}

pub(crate) struct Writer {
    pub(crate) store: Arc<Store>,
    pub(crate) tree: TreeBuilder,
    pub(crate) edge: TileEdge,
    pub(crate) head: watch::Sender<TreeHead>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: LogConfig,
}

impl Writer {
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let max = self.config.max_group.max(1);
        let mut group: Vec<Append> = Vec::with_capacity(max);
        let mut stop = false;
        while !stop {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            match first {
                Job::Append(a) => group.push(a),
                Job::Stop => break,
            }
            while group.len() < max {
                match rx.try_recv() {
                    Ok(Job::Append(a)) => group.push(a),
                    Ok(Job::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut group);
        }
        tracing::debug!(path = %self.store.path().display(), "log writer stopped");
    }

    fn commit(&mut self, group: &mut Vec<Append>) {
        if self.shared.failed.load(Ordering::Acquire) {
            for a in group.drain(..) {
                let _ = a.reply.send(Err(LogError::Stopped));
            }
            return;
        }
        match self.write_group(group) {
            Ok(receipts) => {
                let head = TreeHead {
                    size: self.tree.size(),
                    root: self.tree.root(),
                };
                self.head.send_if_modified(|h| {
                    let changed = h.size != head.size;
                    *h = head;
                    changed
                });
                self.shared.groups.fetch_add(1, Ordering::Relaxed);
                for (a, r) in group.drain(..).zip(receipts) {
                    // A caller that went away needs no answer.
                    let _ = a.reply.send(Ok(r));
                }
            }
            Err(err) => {
                self.shared.failed.store(true, Ordering::Release);
                tracing::error!(path = %self.store.path().display(), entries = group.len(),
                    error = %err, "synced write failed; the log refuses further appends (fail-stop)");
                let msg = err.to_string();
                for a in group.drain(..) {
                    let _ = a.reply.send(Err(LogError::Write(msg.clone())));
                }
            }
        }
    }

    fn write_group(&mut self, group: &[Append]) -> Result<Vec<Receipt>, StoreError> {
        let store = Arc::clone(&self.store);
        let (entries, index, rosters, tiles, meta) = (
            store.cf(Family::Entries)?,
            store.cf(Family::Index)?,
            store.cf(Family::Rosters)?,
            store.cf(Family::Tiles)?,
            store.cf(Family::Meta)?,
        );
        let mut batch = WriteBatch::default();
        let mut pending: HashMap<[u8; 32], u64> = HashMap::new();
        let mut receipts = Vec::with_capacity(group.len());
        let start = self.tree.size();
        for a in group {
            let existing = match pending.get(&a.key) {
                Some(i) => Some(*i),
                None => store
                    .get(Family::Index, &a.key)?
                    .and_then(|v| crate::store::be_u64(&v)),
            };
            if let Some(i) = existing {
                self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
                receipts.push(Receipt {
                    index: i,
                    duplicate: true,
                });
                continue;
            }
            let i = self.tree.size();
            let leaf = self.tree.push_entry(&a.entry);
            self.edge.push_leaf(leaf);
            batch.put_cf(entries, i.to_be_bytes(), &a.entry);
            batch.put_cf(index, a.key, i.to_be_bytes());
            if let Some((epoch, bytes)) = &a.roster {
                batch.put_cf(rosters, epoch.to_be_bytes(), bytes);
            }
            pending.insert(a.key, i);
            receipts.push(Receipt {
                index: i,
                duplicate: false,
            });
        }
        if self.tree.size() != start {
            for (level, n, data) in self.edge.take_writes() {
                batch.put_cf(tiles, tile_key(level, n), data);
            }
            batch.put_cf(meta, TREE_KEY, encode_tree(&self.tree));
            self.shared
                .appended
                .fetch_add(self.tree.size() - start, Ordering::Relaxed);
        }
        // Duplicates only: nothing to write, but they are answered after the same barrier
        // as everything else (their first copy is durable already).
        if !batch.is_empty() {
            store.write_synced(batch)?;
        }
        Ok(receipts)
    }
}
