//! The store's error type.

use std::path::PathBuf;

/// An error from the store. Each variant names the database path and, where there is one,
/// the column family and operation. The RocksDB message is the [`source`](std::error::Error::source),
/// not repeated in the message. `Clone`, so one failed group commit can be reported to every
/// batch in it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("opening the store at {path}")]
    Open {
        /// The database directory.
        path: PathBuf,
        /// What RocksDB reported.
        source: rocksdb::Error,
    },
    /// A column family the store needs is not open (a bug: every family is opened or created
    /// at start).
    #[error("store at {path}: column family `{family}` is not open")]
    MissingFamily {
        /// The database directory.
        path: PathBuf,
        /// The family's name.
        family: &'static str,
    },
    /// A read (`get`, `scan`, …) failed.
    #[error("store at {path}: {op} in `{family}` failed")]
    Read {
        /// The database directory.
        path: PathBuf,
        /// The family read.
        family: &'static str,
        /// The operation.
        op: &'static str,
        /// What RocksDB reported.
        source: rocksdb::Error,
    },
    /// A synced group write failed. Every batch of the group gets this error, and the store
    /// refuses every later write ([`StoreError::Stopped`]).
    #[error("store at {path}: synced write of a group of {batches} batch(es) failed")]
    Write {
        /// The database directory.
        path: PathBuf,
        /// How many batches the failed group held.
        batches: usize,
        /// What RocksDB reported.
        source: rocksdb::Error,
    },
    /// An earlier synced write failed, so the store refuses writes until the node restarts
    /// (fail-stop: after a failed fsync the state of the OS page cache is unknown).
    #[error("store at {path} refuses writes after an earlier failed write; restart the node")]
    Stopped {
        /// The database directory.
        path: PathBuf,
    },
    /// The writer thread is gone (the store is shutting down, or the thread died).
    #[error("store at {path}: the writer has stopped")]
    Closed {
        /// The database directory.
        path: PathBuf,
    },
    /// A [`Submitter`](super::Submitter) was given a batch id not above the previous one.
    #[error("store at {path}: batch {got} submitted after batch {last}; ids must increase")]
    OutOfOrder {
        /// The database directory.
        path: PathBuf,
        /// The previous batch id.
        last: u64,
        /// The offending batch id.
        got: u64,
    },
    /// A checkpoint could not be created.
    #[error("store at {path}: checkpoint into {dir} failed")]
    Checkpoint {
        /// The database directory.
        path: PathBuf,
        /// The checkpoint directory asked for.
        dir: PathBuf,
        /// What RocksDB reported.
        source: rocksdb::Error,
    },
    /// A blocking read task panicked or was cancelled.
    #[error("store at {path}: blocking read task failed: {reason}")]
    Task {
        /// The database directory.
        path: PathBuf,
        /// The join error, as text.
        reason: String,
    },
}
