//! The central node's RocksDB database: one column family per kind of record.
//!
//! | family        | key → value                                                 | written by   |
//! |---------------|-------------------------------------------------------------|--------------|
//! | `entries`     | leaf index (u64 BE) → entry bytes                           | log writer   |
//! | `tiles`       | tile level (u8) ‖ tile index (u64 BE) → 32-byte hashes       | log writer   |
//! | `index`       | dedupe key (content id, 32 bytes) → leaf index (u64 BE)      | log writer   |
//! | `meta`        | `tree` → size (u64 BE) ‖ frontier hashes                    | log writer   |
//! | `rosters`     | epoch (u64 BE) → signed roster bytes                        | log writer   |
//! | `checkpoints` | tree size (u64 BE) → signed checkpoint note with cosignatures | checkpointer |
//! | `witness`     | origin → last checkpoint of that log this node cosigned     | witness      |
//! | `alarms`      | SHA-256 of the evidence → alarm (JSON)                      | witness      |
//!
//! Hash tiles are stored whole: a full tile is written once when it fills, the rightmost
//! (partial) tile of each level is rewritten in every group that grows it. The tile, entry,
//! dedupe and frontier writes of one group are one `WriteBatch`, so after a crash the
//! database holds exactly the groups that were acknowledged (plus possibly the last one, which
//! was never acknowledged but is whole).
//!
//! All calls here block on disk I/O: use them from the writer thread, at start-up, or on
//! tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBRecoveryMode, Direction,
    IteratorMode, Options, WriteBatch, WriteOptions,
};

/// A column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Entries,
    Tiles,
    Index,
    Meta,
    Rosters,
    Checkpoints,
    Witness,
    Alarms,
}

impl Family {
    /// Every family.
    pub const ALL: [Self; 8] = [
        Self::Entries,
        Self::Tiles,
        Self::Index,
        Self::Meta,
        Self::Rosters,
        Self::Checkpoints,
        Self::Witness,
        Self::Alarms,
    ];

    /// Its RocksDB name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Entries => "entries",
            Self::Tiles => "tiles",
            Self::Index => "index",
            Self::Meta => "meta",
            Self::Rosters => "rosters",
            Self::Checkpoints => "checkpoints",
            Self::Witness => "witness",
            Self::Alarms => "alarms",
        }
    }
}

/// Storage failures. Every variant names the database path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening the database at {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rocksdb::Error,
    },
    #[error("database at {path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    #[error("database at {path}: column family {family} is missing")]
    MissingFamily { path: PathBuf, family: &'static str },
    #[error("database at {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// A key and its value, as read by a scan.
pub type Row = (Box<[u8]>, Box<[u8]>);

/// The opened database. Cheap to share behind an `Arc`.
pub struct Store {
    db: DB,
    path: PathBuf,
    sync: WriteOptions,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn family_options(cache: &Cache, bloom: bool) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_cache_index_and_filter_blocks(true);
    if bloom {
        // The dedupe index is probed once per appended entry, almost always for a key that
        // is absent: a bloom filter answers that without reading a block.
        table.set_bloom_filter(10.0, false);
    }
    let mut options = Options::default();
    options.set_block_based_table_factory(&table);
    options.set_write_buffer_size(16 << 20);
    options.set_max_write_buffer_number(2);
    options
}

impl Store {
    /// Opens (or creates) the database at `path`. Blocks (RocksDB replays its WAL here).
    pub fn open(path: &Path) -> Result<Arc<Self>, StoreError> {
        let cache = Cache::new_lru_cache(32 << 20);
        let mut options = family_options(&cache, false);
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_open_files(256);
        options.set_db_write_buffer_size(64 << 20);
        options.set_max_total_wal_size(64 << 20);
        // Two cores: one flush and one compaction at a time.
        options.set_max_background_jobs(2);
        // Flush every family together, so that table files never hold half of a group.
        options.set_atomic_flush(true);
        // Recover to the last whole batch in the WAL; a torn tail (never acknowledged) is
        // dropped.
        options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        options.set_keep_log_file_num(4);
        let descriptors = Family::ALL.iter().map(|f| {
            ColumnFamilyDescriptor::new(f.name(), family_options(&cache, *f == Family::Index))
        });
        let db = DB::open_cf_descriptors(&options, path, descriptors).map_err(|source| {
            StoreError::Open {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(Arc::new(Self {
            db,
            path: path.to_path_buf(),
            sync,
        }))
    }

    /// The database directory.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn cf(&self, family: Family) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(family.name())
            .ok_or_else(|| StoreError::MissingFamily {
                path: self.path.clone(),
                family: family.name(),
            })
    }

    fn io(&self, op: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: self.path.clone(),
            op,
            source,
        }
    }

    /// A point read.
    pub fn get(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(family)?, key)
            .map_err(self.io("read"))
    }

    /// Writes a batch with `sync = true`: returns once it is durable.
    pub fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.db
            .write_opt(batch, &self.sync)
            .map_err(self.io("synced write"))
    }

    /// One synced put.
    pub fn put_synced(&self, family: Family, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(family)?, key, value);
        self.write_synced(batch)
    }

    /// Up to `limit` rows with keys in `[from, ..)`, in key order.
    pub fn scan_from(
        &self,
        family: Family,
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let iter = self.db.iterator_cf(
            self.cf(family)?,
            IteratorMode::From(from, Direction::Forward),
        );
        let mut out = Vec::new();
        for row in iter.take(limit) {
            out.push(row.map_err(self.io("scan"))?);
        }
        Ok(out)
    }

    /// The row with the largest key, if any.
    pub fn last(&self, family: Family) -> Result<Option<Row>, StoreError> {
        let mut iter = self.db.iterator_cf(self.cf(family)?, IteratorMode::End);
        iter.next().transpose().map_err(self.io("scan"))
    }

    pub(crate) fn corrupt(&self, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }
}

/// Key of a tile row.
#[must_use]
pub fn tile_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Decodes a big-endian u64 value.
pub(crate) fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}
