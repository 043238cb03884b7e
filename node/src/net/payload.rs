//! Payload storage seam and the resumable fetch bookkeeping.
//!
//! The network layer serves and fetches sealed payloads (DESIGN §4): a manifest and its
//! ciphertext chunks, all addressed by hash. It reads and writes them through
//! [`PayloadStore`], whose calls block (RocksDB); the task runs them on
//! `spawn_blocking`.
//!
//! **Completion rule.** A manifest is written with [`PayloadStore::put_manifest`] only
//! after every one of its chunks is stored: the relay core treats "the manifest is in the
//! `Payloads` column" as "the payload is here". A fetch interrupted midway therefore
//! leaves only chunks behind; the next attempt (re)fetches the manifest (small) and asks
//! only for chunks that [`PayloadStore::has_chunk`] does not report.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use lienthong_protocol::seal::{ChunkId, Manifest, PayloadId};

/// Blocking access to manifests and chunks. Implemented by the node's RocksDB store
/// (`Payloads` and `Chunks` columns) and by [`MemoryPayloadStore`] for tests.
pub trait PayloadStore: Send + Sync + 'static {
    /// The manifest's canonical bytes, if the payload is complete here.
    fn get_manifest(&self, id: &PayloadId) -> io::Result<Option<Vec<u8>>>;
    /// Records a complete payload. Called only once every chunk is stored, and durable on
    /// return.
    fn put_manifest(&self, id: &PayloadId, bytes: &[u8]) -> io::Result<()>;
    /// Whether the chunk is stored.
    fn has_chunk(&self, id: &ChunkId) -> io::Result<bool>;
    /// A ciphertext chunk.
    fn get_chunk(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>>;
    /// Stores a verified ciphertext chunk (idempotent: chunks are content-addressed).
    /// Durable on return.
    fn put_chunk(&self, id: &ChunkId, bytes: &[u8]) -> io::Result<()>;
}

/// An in-memory [`PayloadStore`] (tests, simulations).
#[derive(Debug, Default)]
pub struct MemoryPayloadStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    manifests: HashMap<PayloadId, Vec<u8>>,
    chunks: HashMap<ChunkId, Vec<u8>>,
}

impl MemoryPayloadStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores a complete payload (chunks first, then the manifest).
    pub fn insert_sealed(&self, manifest: &Manifest, chunks: &[Vec<u8>]) {
        let mut inner = self.lock();
        for chunk in chunks {
            inner.chunks.insert(ChunkId::of(chunk), chunk.clone());
        }
        inner
            .manifests
            .insert(manifest.id(), manifest.as_bytes().to_vec());
    }

    /// Number of chunks held.
    pub fn chunk_count(&self) -> usize {
        self.lock().chunks.len()
    }

    /// Whether the payload is complete here.
    pub fn has_manifest(&self, id: &PayloadId) -> bool {
        self.lock().manifests.contains_key(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // A panic while holding the lock cannot leave the maps inconsistent (single
        // inserts), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PayloadStore for MemoryPayloadStore {
    fn get_manifest(&self, id: &PayloadId) -> io::Result<Option<Vec<u8>>> {
        Ok(self.lock().manifests.get(id).cloned())
    }

    fn put_manifest(&self, id: &PayloadId, bytes: &[u8]) -> io::Result<()> {
        self.lock().manifests.insert(*id, bytes.to_vec());
        Ok(())
    }

    fn has_chunk(&self, id: &ChunkId) -> io::Result<bool> {
        Ok(self.lock().chunks.contains_key(id))
    }

    fn get_chunk(&self, id: &ChunkId) -> io::Result<Option<Vec<u8>>> {
        Ok(self.lock().chunks.get(id).cloned())
    }

    fn put_chunk(&self, id: &ChunkId, bytes: &[u8]) -> io::Result<()> {
        self.lock().chunks.insert(*id, bytes.to_vec());
        Ok(())
    }
}

/// Where one fetch stands.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Checking the local store (blocking task under way).
    Probing,
    /// Waiting for the manifest from a peer.
    Manifest { asked: Option<PeerId> },
    /// The manifest is known and checked; fetching the chunks in `missing`.
    Chunks {
        manifest: Arc<Manifest>,
        /// Chunk indexes not yet stored and not in flight.
        missing: BTreeSet<u32>,
        /// Chunk indexes asked for and not yet answered, with the peer asked.
        in_flight: HashMap<u32, PeerId>,
        /// Chunk indexes received and being written.
        storing: HashSet<u32>,
    },
    /// Every chunk stored; the manifest is being written.
    Finishing,
}

/// One payload being fetched.
#[derive(Debug)]
pub(crate) struct FetchJob {
    pub phase: Phase,
    /// Peers said to hold the payload, most recent last (bounded).
    pub peers: Vec<PeerId>,
    /// Last time something happened (for eviction of stalled jobs).
    pub touched: std::time::Instant,
}

/// Most candidate peers remembered per fetch.
pub(crate) const MAX_FETCH_PEERS: usize = 8;

impl FetchJob {
    pub fn new(peer: PeerId) -> Self {
        Self {
            phase: Phase::Probing,
            peers: vec![peer],
            touched: std::time::Instant::now(),
        }
    }

    /// Adds (or refreshes) a candidate peer.
    pub fn add_peer(&mut self, peer: PeerId) {
        self.peers.retain(|p| *p != peer);
        if self.peers.len() >= MAX_FETCH_PEERS {
            self.peers.remove(0);
        }
        self.peers.push(peer);
        self.touched = std::time::Instant::now();
    }

    /// Forgets a peer that does not have the payload or misbehaved.
    pub fn drop_peer(&mut self, peer: &PeerId) {
        self.peers.retain(|p| p != peer);
    }

    /// Whether requests are outstanding.
    pub fn busy(&self) -> bool {
        match &self.phase {
            Phase::Probing | Phase::Finishing => true,
            Phase::Manifest { asked } => asked.is_some(),
            Phase::Chunks {
                in_flight, storing, ..
            } => !in_flight.is_empty() || !storing.is_empty(),
        }
    }
}
