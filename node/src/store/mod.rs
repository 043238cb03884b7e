//! The durable store: RocksDB with one column family per relay [`Column`] plus the node's
//! payload families ([`Column::Chunks`], [`Column::Payloads`]).
//!
//! | family       | key → value                                   | written by |
//! |--------------|-----------------------------------------------|------------|
//! | `envelopes`  | content id → signed envelope                  | relay      |
//! | `deliveries` | content id ‖ recipient → delivery record      | relay      |
//! | `inbox`      | tenant ‖ 0 ‖ position (u64 BE) → content id    | relay      |
//! | `seen`       | content id → seen record (dedupe, 01 status)  | relay      |
//! | `chains`     | tenant → chain head                           | relay      |
//! | `sender_seq` | sender ‖ 0 ‖ seq (u64 BE) → content id         | relay      |
//! | `statuses`   | document id ‖ recipient → status record       | relay      |
//! | `evidence`   | sender ‖ 0 ‖ seq (u64 BE) → equivocation       | relay      |
//! | `meta`       | name → value (roster, counters)               | relay      |
//! | `chunks`     | chunk id → chunk bytes                        | networking |
//! | `payloads`   | payload id → manifest                         | networking |
//!
//! The relay's layouts are defined (and documented) by [`Column`] in the protocol crate.
//!
//! # Writes: one writer thread, group commit
//!
//! Every write goes through one bounded queue to one writer thread, which drains whatever is
//! queued and writes it as **one** RocksDB `WriteBatch` with `sync = true`: many concurrent
//! commits share one WAL fsync. A write is acknowledged only after that fsync returned, and
//! writes become durable in the order they were queued (a durable batch implies every batch
//! queued before it is durable too). When the queue is full, submitting waits (backpressure)
//! instead of buffering more.
//!
//! Fail-stop: if a synced write fails, every batch of its group gets the error (never an
//! acknowledgement) and every later write gets [`StoreError::Stopped`]. After a failed fsync
//! the kernel may have dropped the dirty pages and cleared the error (Linux does), so a retry
//! could "succeed" without the data ever reaching the disk, and what a read returns may differ
//! from what a restart will find. The only safe course is to stop acknowledging, and let the
//! node restart and recover from what is really on disk.
//!
//! Two ways in:
//! - [`Store::commit`] / [`Store::write`]: `async`, resolve once the write is durable. For
//!   request handlers and the networking layer.
//! - [`Store::pipeline`]: a [`Submitter`] and a [`Completions`] queue for the relay driver,
//!   a single task that issues the relay core's batches in order without waiting for each,
//!   and learns, in order, which are durable (each [`Committed`] becomes the core's
//!   `Event::Committed`). At most `window` batches are in flight: submitting waits for a slot
//!   that the driver frees by receiving completions, so neither queue can grow without bound.
//!
//! # Reads
//!
//! Reads ([`Store::get`], [`Store::scan`], [`Store::scan_prefix`], [`Store::recover_rows`],
//! [`Store::checkpoint`]) are synchronous and **block** on disk I/O: call them from a
//! blocking context (start-up, the CLI, `spawn_blocking`), or through [`Store::read`], which
//! runs a closure on tokio's blocking pool.
//!
//! # Memory
//!
//! Sized for a small node (idle RSS well under 50 MiB): one block cache shared by every
//! family ([`StoreConfig::block_cache_bytes`], 32 MiB) that also holds index and filter
//! blocks, small memtables with a global cap across families
//! ([`StoreConfig::total_write_buffer_bytes`]), and a bounded number of open table files.
//!
//! # Backup and restore
//!
//! [`Store::checkpoint`] creates a consistent, openable copy of the database while the node
//! runs (hard links to the immutable table files when on the same file system, plus a copy of
//! the live WAL; every family is cut at the same point, and a batch is either wholly in it or
//! not at all). To restore: stop the node, move the data directory aside, move (or copy) the
//! checkpoint directory to the data directory's path, and start the node; it recovers from
//! the checkpoint like after a crash (unfinished deliveries resume; batches acknowledged after
//! the checkpoint are lost, and peers' retries and catch-up bring their documents back).

mod error;
mod payloads;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use lienthong_protocol::relay::store::{Batch, Column};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBIteratorWithThreadMode,
    DBRecoveryMode, Direction, IteratorMode, Options, ReadOptions,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

pub use error::StoreError;
use writer::{Job, Payload, Reply, Shared};

/// A column family of the node's database: the relay's key space ([`Column`], which also
/// names the payload and chunk families written by the networking layer).
pub type Family = Column;

/// One node-side write, for [`Store::write`] (relay writes come as [`Batch`]es).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or overwrite.
    Put {
        /// The family written.
        family: Family,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove (no error if absent).
    Delete {
        /// The family written.
        family: Family,
        /// The key.
        key: Vec<u8>,
    },
}

impl WriteOp {
    /// Bytes written (keys and values).
    pub fn size(&self) -> usize {
        match self {
            Self::Put { key, value, .. } => key.len() + value.len(),
            Self::Delete { key, .. } => key.len(),
        }
    }
}

/// Tuning. The defaults suit a small node.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Writes waiting for the writer thread; submitting beyond this waits.
    pub queue_capacity: usize,
    /// At most this many batches share one synced `WriteBatch`.
    pub max_group_batches: usize,
    /// At most this many bytes (keys and values) share one synced `WriteBatch` (a single
    /// larger write still goes through, alone).
    pub max_group_bytes: usize,
    /// The block cache shared by every family, including index and filter blocks.
    pub block_cache_bytes: usize,
    /// One memtable's size, per family.
    pub write_buffer_bytes: usize,
    /// All memtables together; reaching it flushes.
    pub total_write_buffer_bytes: usize,
    /// Open table files kept (each holds a descriptor and its index in memory).
    pub max_open_files: i32,
    /// Live WAL size that forces a flush, so that recovery replays little.
    pub max_total_wal_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 1024,
            max_group_batches: 512,
            max_group_bytes: 8 << 20,
            block_cache_bytes: 32 << 20,
            write_buffer_bytes: 16 << 20,
            total_write_buffer_bytes: 64 << 20,
            max_open_files: 256,
            max_total_wal_bytes: 128 << 20,
        }
    }
}

/// Counters of the writer, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Synced `WriteBatch`es written (one fsync each).
    pub groups: u64,
    /// Batches (jobs) made durable.
    pub batches: u64,
    /// Bytes of keys and values made durable.
    pub bytes: u64,
    /// A synced write failed; the store refuses writes (fail-stop).
    pub failed: bool,
}

/// The outcome of one batch submitted through a [`Submitter`].
#[derive(Debug, Clone)]
pub struct Committed {
    /// The batch's id ([`Batch::id`]).
    pub id: u64,
    /// `Ok` once it is durable; the write error otherwise (and then every later batch fails
    /// too: the store has stopped).
    pub result: Result<(), StoreError>,
}

/// One row: key and value.
pub type Row = (Vec<u8>, Vec<u8>);

/// One row of a relay column, for `Relay::recover`.
pub type RecoveredRow = (Column, Vec<u8>, Vec<u8>);

/// A handle to the store. Cheap to clone; the database closes when the last handle (and
/// [`Submitter`]) is dropped, after the writer has finished what was queued.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<DB>,
    path: PathBuf,
    /// `None` only while dropping.
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("stats", &self.shared.stats())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit; joining it means
        // that once the last handle is gone the database is closed and can be reopened.
        self.queue = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "store writer thread panicked");
        }
    }
}

/// Looks up an open family's handle.
pub(crate) fn family_handle<'a>(
    db: &'a DB,
    path: &Path,
    family: Family,
) -> Result<&'a ColumnFamily, StoreError> {
    db.cf_handle(family.name())
        .ok_or_else(|| StoreError::MissingFamily {
            path: path.to_path_buf(),
            family: family.name(),
        })
}

fn table_options(cache: &Cache) -> BlockBasedOptions {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    // Index and filter blocks live in (and are bounded by) the block cache, not beside it.
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    // Most reads are point look-ups by content id (dedupe, envelopes, chunks).
    table.set_bloom_filter(10.0, false);
    table
}

/// Families whose values are large and written once (envelopes, sealed chunks): their
/// values go to blob files at flush and stay there, so compactions move only the keys
/// instead of rewriting every envelope several times (RocksDB's integrated BlobDB).
const BLOB_FAMILIES: [Family; 2] = [Family::Envelopes, Family::Chunks];
/// Smallest value kept in a blob file; smaller ones stay in the table.
const MIN_BLOB_BYTES: u64 = 512;

fn family_options(config: &StoreConfig, cache: &Cache, name: &str) -> Options {
    let mut options = Options::default();
    options.set_block_based_table_factory(&table_options(cache));
    options.set_write_buffer_size(config.write_buffer_bytes);
    options.set_max_write_buffer_number(2);
    if BLOB_FAMILIES.iter().any(|f| f.name() == name) {
        options.set_enable_blob_files(true);
        options.set_min_blob_size(MIN_BLOB_BYTES);
        options.set_blob_file_size(64 << 20);
        // Deleted envelopes' space is reclaimed when compactions reach their blob files.
        options.set_enable_blob_gc(true);
    }
    if name == Family::Meta.name() {
        // Every DMS send first looks up its idempotency key here, and nearly every lookup
        // misses: a bloom filter over the memtables' whole keys answers most misses without
        // searching the memtables' skiplists (the table files have their own filters).
        options.set_memtable_whole_key_filtering(true);
        options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
    }
    options
}

/// Share of a `Meta` memtable given to its bloom filter (16 MiB × 0.02: 328 KiB per
/// memtable).
const MEMTABLE_BLOOM_RATIO: f64 = 0.02;

fn db_options(config: &StoreConfig, cache: &Cache) -> Options {
    let mut options = family_options(config, cache, rocksdb::DEFAULT_COLUMN_FAMILY_NAME);
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_open_files(config.max_open_files);
    options.set_db_write_buffer_size(config.total_write_buffer_bytes);
    options.set_max_total_wal_size(config.max_total_wal_bytes);
    options.set_max_background_jobs(2);
    // Flush every family together, so that table files never hold half of a batch.
    options.set_atomic_flush(true);
    // Recover to the last whole batch in the WAL; a torn tail (a write cut by the crash,
    // never acknowledged) is dropped.
    options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    options.set_keep_log_file_num(4);
    options.set_max_log_file_size(1 << 20);
    options
}

impl Store {
    /// Opens (or creates) the store at `path` with the default [`StoreConfig`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, StoreConfig::default())
    }

    /// Opens (or creates) the store at `path`, creating missing families, and starts the
    /// writer thread. Blocks (RocksDB replays its WAL here).
    pub fn open_with(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let options = db_options(&config, &cache);

        // Families present on disk but unknown to this version are opened too (RocksDB
        // refuses to open a database without all of them), with the same options.
        let mut names: Vec<String> = Family::ALL.iter().map(|f| f.name().to_owned()).collect();
        if let Ok(existing) = DB::list_cf(&options, &path) {
            for name in existing {
                if name != rocksdb::DEFAULT_COLUMN_FAMILY_NAME && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let descriptors = names.into_iter().map(|name| {
            let options = family_options(&config, &cache, &name);
            ColumnFamilyDescriptor::new(name, options)
        });
        let db = DB::open_cf_descriptors(&options, &path, descriptors).map_err(|source| {
            StoreError::Open {
                path: path.clone(),
                source,
            }
        })?;
        let db = Arc::new(db);

        let (queue, rx) = mpsc::channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared::default());
        let writer = {
            let (db, writer_path, shared) = (Arc::clone(&db), path.clone(), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer::run(db, writer_path, rx, config, shared))
                .map_err(|e| StoreError::Task {
                    path: path.clone(),
                    reason: format!("spawning the writer thread: {e}"),
                })?
        };
        tracing::debug!(path = %path.display(), "store opened");
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                path,
                queue: Some(queue),
                writer: Some(writer),
                shared,
            }),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The writer's counters.
    pub fn stats(&self) -> StoreStats {
        self.inner.shared.stats()
    }

    /// Commits one relay batch atomically; resolves once it is durable (after the fsync of
    /// its group). Waits while the queue is full. Cancel-safe in the sense that dropping the
    /// future never half-writes a batch (it may still be written).
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit_payload(Payload::Relay(batch)).await
    }

    /// Commits node-side writes (chunks, manifests) atomically, in queue order with relay
    /// batches; resolves once durable.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.commit_payload(Payload::Ops(ops)).await
    }

    async fn commit_payload(&self, payload: Payload) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job {
            payload,
            reply: Reply::Once(tx),
        })
        .await?;
        rx.await.map_err(|_| self.closed())?
    }

    async fn enqueue(&self, job: Job) -> Result<(), StoreError> {
        if self.inner.shared.failed.load(Ordering::Acquire) {
            return Err(StoreError::Stopped {
                path: self.inner.path.clone(),
            });
        }
        let queue = self.inner.queue.as_ref().ok_or_else(|| self.closed())?;
        queue.send(job).await.map_err(|_| self.closed())
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.inner.path.clone(),
        }
    }

    /// A pipeline for the relay driver: at most `window` (≥ 1) batches submitted and not yet
    /// received as completions.
    pub fn pipeline(&self, window: usize) -> (Submitter, Completions) {
        let window = window.max(1);
        let (tx, rx) = mpsc::channel(window);
        let submitter = Submitter {
            store: self.clone(),
            window: Arc::new(Semaphore::new(window)),
            completions: tx,
            last: None,
        };
        (submitter, Completions { rx })
    }

    fn handle(&self, family: Family) -> Result<&ColumnFamily, StoreError> {
        family_handle(&self.inner.db, &self.inner.path, family)
    }

    fn read_error(&self, family: Family, op: &'static str, source: rocksdb::Error) -> StoreError {
        StoreError::Read {
            path: self.inner.path.clone(),
            family: family.name(),
            op,
            source,
        }
    }

    /// Reads one value. Blocking.
    pub fn get(
        &self,
        family: impl Into<Family>,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let family = family.into();
        self.inner
            .db
            .get_cf(self.handle(family)?, key)
            .map_err(|source| self.read_error(family, "get", source))
    }

    /// Every row of a family, in key order, in memory: for small families. Blocking.
    pub fn scan(&self, family: impl Into<Family>) -> Result<Vec<Row>, StoreError> {
        self.scan_prefix(family, &[])
    }

    /// The rows whose key starts with `prefix`, in key order. Blocking.
    pub fn scan_prefix(
        &self,
        family: impl Into<Family>,
        prefix: &[u8],
    ) -> Result<Vec<Row>, StoreError> {
        self.scan_prefix_limit(family, prefix, usize::MAX)
    }

    /// The first key at or after `from`, if any (to walk the distinct prefixes of a family
    /// by seeking). Blocking.
    pub fn first_key_from(
        &self,
        family: impl Into<Family>,
        from: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let family = family.into();
        let mut iter = self.inner.db.iterator_cf(
            self.handle(family)?,
            IteratorMode::From(from, Direction::Forward),
        );
        match iter.next() {
            None => Ok(None),
            Some(item) => {
                let (key, _) = item.map_err(|source| self.read_error(family, "seek", source))?;
                Ok(Some(key.into_vec()))
            }
        }
    }

    /// At most `limit` rows whose key starts with `prefix`, in key order: a page of a large
    /// family (e.g. a ledger queue). Blocking.
    pub fn scan_prefix_limit(
        &self,
        family: impl Into<Family>,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let family = family.into();
        let iter = self.inner.db.iterator_cf(
            self.handle(family)?,
            IteratorMode::From(prefix, Direction::Forward),
        );
        let mut rows = Vec::new();
        for item in iter {
            let (key, value) = item.map_err(|source| self.read_error(family, "scan", source))?;
            if !key.starts_with(prefix) || rows.len() >= limit {
                break;
            }
            rows.push((key.into_vec(), value.into_vec()));
        }
        Ok(rows)
    }

    /// At most `limit` rows whose key starts with `prefix`, from key `start` on (inclusive;
    /// `start` should itself start with `prefix`), in key order: a bounded page of a range,
    /// e.g. a tenant's inbox after a cursor. Blocking.
    pub fn scan_range(
        &self,
        family: impl Into<Family>,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let family = family.into();
        let from = if start < prefix { prefix } else { start };
        let iter = self.inner.db.iterator_cf(
            self.handle(family)?,
            IteratorMode::From(from, Direction::Forward),
        );
        let mut rows = Vec::with_capacity(limit.min(1024));
        for item in iter {
            if rows.len() >= limit {
                break;
            }
            let (key, value) = item.map_err(|source| self.read_error(family, "scan", source))?;
            if !key.starts_with(prefix) {
                break;
            }
            rows.push((key.into_vec(), value.into_vec()));
        }
        Ok(rows)
    }

    /// Every row the relay needs to restart ([`Relay::RECOVERY_COLUMNS`], column by column,
    /// keys in order), streamed; the relay reads other columns on demand. Blocking; call it
    /// before the driver starts writing. Bypasses the block cache (a one-off scan).
    ///
    /// [`Relay::RECOVERY_COLUMNS`]: lienthong_protocol::relay::Relay::RECOVERY_COLUMNS
    pub fn recover_rows(&self) -> RecoverRows<'_> {
        RecoverRows {
            store: self,
            columns: lienthong_protocol::relay::Relay::RECOVERY_COLUMNS.iter(),
            current: None,
            done: false,
        }
    }

    /// Runs a read on tokio's blocking pool, off the async executor:
    /// `store.read(move |s| s.get(Column::Seen, &id)).await`.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task {
                path: self.inner.path.clone(),
                reason: e.to_string(),
            })?
    }

    /// Creates a consistent checkpoint of the running store in `dir`, which must not exist
    /// (its parent must). The checkpoint is a complete database: [`Store::open`] opens it.
    /// Blocking (flushes memtables). See the module documentation for restoring.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<(), StoreError> {
        let dir = dir.as_ref();
        let error = |source| StoreError::Checkpoint {
            path: self.inner.path.clone(),
            dir: dir.to_path_buf(),
            source,
        };
        Checkpoint::new(&self.inner.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(error)
    }

    /// Test hooks for the unit tests.
    #[cfg(test)]
    fn hooks(&self) -> &writer::test_hooks::Hooks {
        &self.inner.shared.test
    }
}

/// Submits relay batches in order without waiting for each to be durable (see
/// [`Store::pipeline`]). Holds the store open.
#[derive(Debug)]
pub struct Submitter {
    store: Store,
    window: Arc<Semaphore>,
    completions: mpsc::Sender<(Committed, OwnedSemaphorePermit)>,
    last: Option<u64>,
}

impl Submitter {
    /// Queues `batch`. Waits while `window` batches are in flight or the store's queue is
    /// full; returns once queued. Its outcome arrives on [`Completions`], in submission
    /// order. An `Err` here means the batch was not queued and no completion will come.
    /// Batch ids must increase.
    pub async fn submit(&mut self, batch: Batch) -> Result<(), StoreError> {
        if let Some(last) = self.last
            && batch.id <= last
        {
            return Err(StoreError::OutOfOrder {
                path: self.store.inner.path.clone(),
                last,
                got: batch.id,
            });
        }
        let permit = Arc::clone(&self.window)
            .acquire_owned()
            .await
            .map_err(|_| self.store.closed())?;
        let id = batch.id;
        let reply = Reply::Pipeline {
            id,
            tx: self.completions.clone(),
            permit,
        };
        self.store
            .enqueue(Job {
                payload: Payload::Relay(batch),
                reply,
            })
            .await?;
        self.last = Some(id);
        Ok(())
    }

    /// The store this submits to.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// The in-order outcomes of a [`Submitter`]'s batches.
#[derive(Debug)]
pub struct Completions {
    rx: mpsc::Receiver<(Committed, OwnedSemaphorePermit)>,
}

impl Completions {
    /// The next outcome, in submission order; frees its slot in the window. `None` once the
    /// submitter is gone and every outcome was received.
    pub async fn recv(&mut self) -> Option<Committed> {
        self.rx.recv().await.map(|(committed, _permit)| committed)
    }

    /// The next outcome if one is ready.
    pub fn try_recv(&mut self) -> Option<Committed> {
        self.rx
            .try_recv()
            .ok()
            .map(|(committed, _permit)| committed)
    }
}

/// The rows of every relay column, from [`Store::recover_rows`].
pub struct RecoverRows<'a> {
    store: &'a Store,
    columns: std::slice::Iter<'static, Column>,
    current: Option<(Column, DBIteratorWithThreadMode<'a, DB>)>,
    done: bool,
}

impl fmt::Debug for RecoverRows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoverRows")
            .field("path", &self.store.inner.path)
            .field("column", &self.current.as_ref().map(|(column, _)| *column))
            .finish_non_exhaustive()
    }
}

impl Iterator for RecoverRows<'_> {
    type Item = Result<RecoveredRow, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some((column, iter)) = &mut self.current {
                let column = *column;
                match iter.next() {
                    Some(Ok((key, value))) => {
                        return Some(Ok((column, key.into_vec(), value.into_vec())));
                    }
                    Some(Err(source)) => {
                        self.done = true;
                        return Some(Err(self.store.read_error(column, "recover", source)));
                    }
                    None => self.current = None,
                }
            }
            let Some(&column) = self.columns.next() else {
                self.done = true;
                break;
            };
            match self.store.handle(column) {
                Ok(handle) => {
                    // A one-off full scan: do not evict the hot set from the block cache.
                    let mut options = ReadOptions::default();
                    options.fill_cache(false);
                    let iter =
                        self.store
                            .inner
                            .db
                            .iterator_cf_opt(handle, options, IteratorMode::Start);
                    self.current = Some((column, iter));
                }
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::collections::HashSet;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn batch(id: u64) -> Batch {
        let mut b = Batch {
            id,
            ops: Vec::new(),
        };
        b.put(Column::Envelopes, id.to_be_bytes().to_vec(), vec![1; 100]);
        b.put(Column::Meta, b"head".to_vec(), id.to_be_bytes().to_vec());
        b
    }

    fn open(dir: &Path, config: StoreConfig) -> Store {
        Store::open_with(dir, config).unwrap()
    }

    #[test]
    fn families_cover_every_column_with_unique_names() {
        let names: HashSet<_> = Family::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), Family::ALL.len());
        for column in Column::ALL {
            assert!(Family::ALL.contains(&column));
        }
        assert!(!names.contains(rocksdb::DEFAULT_COLUMN_FAMILY_NAME));
    }

    /// A queued group waits for the writer; when it goes, everything queued shares one fsync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_batches_share_one_synced_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(
            dir.path(),
            StoreConfig {
                queue_capacity: 128,
                ..Default::default()
            },
        );
        store.hooks().set_paused(true);
        let tasks: Vec<_> = (0..64)
            .map(|id| {
                let store = store.clone();
                tokio::spawn(async move { store.commit(batch(id)).await })
            })
            .collect();
        // All 64 are queued or held by the (paused) writer once the queue holds 63.
        let queue = store.inner.queue.clone().unwrap();
        while queue.max_capacity() - queue.capacity() < 63 {
            tokio::task::yield_now().await;
        }
        store.hooks().set_paused(false);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = store.stats();
        assert_eq!(stats.batches, 64);
        // The held job goes alone or with the queued ones: at most 2 groups.
        assert!(stats.groups <= 2, "{stats:?}");
    }

    /// With the writer held, a full queue makes submitting wait instead of buffering.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queue_makes_submit_wait() {
        const CAPACITY: usize = 2;
        let dir = tempfile::tempdir().unwrap();
        let store = open(
            dir.path(),
            StoreConfig {
                queue_capacity: CAPACITY,
                ..Default::default()
            },
        );
        let (mut submitter, mut completions) = store.pipeline(64);
        store.hooks().set_paused(true);
        let mut cx = Context::from_waker(Waker::noop());
        let mut id = 0;
        let blocked = loop {
            let mut fut = Box::pin(submitter.submit(batch(id)));
            match fut.as_mut().poll(&mut cx) {
                Poll::Ready(result) => result.unwrap(),
                Poll::Pending => break fut,
            }
            id += 1;
            assert!(
                id <= CAPACITY as u64 + 1,
                "submit never waited: {id} accepted"
            );
        };
        // The queue's capacity, plus at most the one job the held writer took.
        assert!(id >= CAPACITY as u64, "{id}");
        store.hooks().set_paused(false);
        blocked.await.unwrap();
        for expected in 0..=id {
            let committed = completions.recv().await.unwrap();
            assert_eq!(committed.id, expected);
            committed.result.unwrap();
        }
    }

    /// The window bounds batches in flight: without receiving completions, submitting waits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn window_bounds_unreceived_completions() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), StoreConfig::default());
        let (mut submitter, mut completions) = store.pipeline(3);
        for id in 0..3 {
            submitter.submit(batch(id)).await.unwrap();
        }
        {
            let mut fut = pin!(submitter.submit(batch(3)));
            let mut cx = Context::from_waker(Waker::noop());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert_eq!(completions.recv().await.unwrap().id, 0);
            fut.await.unwrap();
        }
        for id in 1..4 {
            let committed = completions.recv().await.unwrap();
            assert_eq!(committed.id, id);
            committed.result.unwrap();
        }
        assert!(matches!(
            submitter.submit(batch(2)).await,
            Err(StoreError::OutOfOrder {
                last: 3,
                got: 2,
                ..
            })
        ));
    }

    /// A failed synced write is reported to every batch of its group, and the store stops.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_write_fails_the_group_and_stops_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), StoreConfig::default());
        store.commit(batch(0)).await.unwrap();

        let (mut submitter, mut completions) = store.pipeline(16);
        store.hooks().set_paused(true);
        store.hooks().fail_next();
        for id in 1..5 {
            submitter.submit(batch(id)).await.unwrap();
        }
        store.hooks().set_paused(false);
        for id in 1..5 {
            let committed = completions.recv().await.unwrap();
            assert_eq!(committed.id, id);
            // The first group fails with the write error; anything after it is refused.
            match committed.result {
                Err(StoreError::Write { .. } | StoreError::Stopped { .. }) => {}
                other => panic!("batch {id}: {other:?}"),
            }
        }
        assert!(store.stats().failed);
        assert!(matches!(
            store.commit(batch(9)).await,
            Err(StoreError::Stopped { .. })
        ));
        assert!(matches!(
            submitter.submit(batch(10)).await,
            Err(StoreError::Stopped { .. })
        ));
        // Nothing of the failed batches reached the database; reads still work.
        assert_eq!(
            store.get(Column::Meta, b"head").unwrap(),
            Some(0u64.to_be_bytes().to_vec())
        );
        assert_eq!(
            store.get(Column::Envelopes, &1u64.to_be_bytes()).unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn chunks_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), StoreConfig::default());
        store
            .write(vec![
                WriteOp::Put {
                    family: Column::Chunks,
                    key: b"c1".to_vec(),
                    value: b"x".to_vec(),
                },
                WriteOp::Put {
                    family: Column::Chunks,
                    key: b"c2".to_vec(),
                    value: b"y".to_vec(),
                },
                WriteOp::Put {
                    family: Column::Payloads,
                    key: b"p".to_vec(),
                    value: b"m".to_vec(),
                },
            ])
            .await
            .unwrap();
        store
            .write(vec![WriteOp::Delete {
                family: Column::Chunks,
                key: b"c1".to_vec(),
            }])
            .await
            .unwrap();
        let rows = store.read(|s| s.scan(Column::Chunks)).await.unwrap();
        assert_eq!(rows, vec![(b"c2".to_vec(), b"y".to_vec())]);
        assert_eq!(
            store.get(Column::Payloads, b"p").unwrap(),
            Some(b"m".to_vec())
        );
        // Node families are not relay rows.
        assert_eq!(store.recover_rows().count(), 0);
    }
}
