//! The writer thread: group commit.
//!
//! Callers put [`Job`]s on one bounded queue. The thread takes the first job, then drains
//! whatever else is queued (up to [`StoreConfig::max_group_batches`] jobs and
//! [`StoreConfig::max_group_bytes`] bytes), writes them all as one RocksDB `WriteBatch` with
//! `sync = true` (one WAL append, one fsync), and only then answers every job of the group,
//! in queue order. Jobs are never reordered, so batches become durable in submission order.
//!
//! Fail-stop: if a synced write fails, every job of the group gets the error and every later
//! job gets [`StoreError::Stopped`]. After a failed fsync the kernel may have dropped the
//! dirty pages and cleared the error (Linux does), so a retry could "succeed" without the
//! data ever reaching the disk, and what a read returns may differ from what a restart will
//! find. The only safe course is to stop acknowledging and let the node restart and recover
//! from what is really on disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lienthong_protocol::relay::store::{Batch, StoreOp};
use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use super::{Committed, StoreConfig, StoreError, StoreStats, WriteOp, family_handle};

/// What a job writes.
pub(super) enum Payload {
    /// A relay batch.
    Relay(Batch),
    /// Node-side writes (chunks, payload manifests, or any family).
    Ops(Vec<WriteOp>),
}

impl Payload {
    /// Bytes of keys and values, for the group bound.
    pub(super) fn size(&self) -> usize {
        match self {
            Self::Relay(batch) => batch.size(),
            Self::Ops(ops) => ops.iter().map(WriteOp::size).sum(),
        }
    }

    fn apply(
        &self,
        db: &DB,
        path: &std::path::Path,
        wb: &mut WriteBatch,
    ) -> Result<(), StoreError> {
        match self {
            Self::Relay(batch) => {
                for op in &batch.ops {
                    match op {
                        StoreOp::Put { column, key, value } => {
                            wb.put_cf(family_handle(db, path, *column)?, key, value);
                        }
                        StoreOp::Delete { column, key } => {
                            wb.delete_cf(family_handle(db, path, *column)?, key);
                        }
                    }
                }
            }
            Self::Ops(ops) => {
                for op in ops {
                    match op {
                        WriteOp::Put { family, key, value } => {
                            wb.put_cf(family_handle(db, path, *family)?, key, value);
                        }
                        WriteOp::Delete { family, key } => {
                            wb.delete_cf(family_handle(db, path, *family)?, key);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Where a job's outcome goes.
pub(super) enum Reply {
    /// One waiter ([`Store::commit`](super::Store::commit), [`Store::write`](super::Store::write)).
    Once(oneshot::Sender<Result<(), StoreError>>),
    /// A pipeline's in-order completion queue. The permit is the job's slot in the pipeline's
    /// window; it travels with the completion and is released when the driver receives it,
    /// so the completion queue (capacity = window) can never be full when the writer sends.
    Pipeline {
        id: u64,
        tx: mpsc::Sender<(Committed, OwnedSemaphorePermit)>,
        permit: OwnedSemaphorePermit,
    },
}

impl Reply {
    fn send(self, result: Result<(), StoreError>) {
        match self {
            // A waiter that went away (its future was dropped) needs no answer.
            Self::Once(tx) => {
                let _ = tx.send(result);
            }
            Self::Pipeline { id, tx, permit } => {
                // Cannot be full (see above); closed means the driver dropped its receiver.
                let _ = tx.try_send((Committed { id, result }, permit));
            }
        }
    }
}

/// One queued write.
pub(super) struct Job {
    pub(super) payload: Payload,
    pub(super) reply: Reply,
}

/// State shared between the store handles and the writer thread.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) groups: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) bytes: AtomicU64,
    /// Set once a synced write failed; never cleared.
    pub(super) failed: AtomicBool,
    #[cfg(test)]
    pub(super) test: test_hooks::Hooks,
}

impl Shared {
    pub(super) fn stats(&self) -> StoreStats {
        StoreStats {
            groups: self.groups.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Acquire),
        }
    }
}

/// The writer thread's body. Returns when every sender is gone and the queue is empty.
pub(super) fn run(
    db: Arc<DB>,
    path: PathBuf,
    mut rx: mpsc::Receiver<Job>,
    config: StoreConfig,
    shared: Arc<Shared>,
) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let max_batches = config.max_group_batches.max(1);
    let mut carried: Option<Job> = None;
    let mut group: Vec<Job> = Vec::with_capacity(max_batches);
    loop {
        let Some(first) = carried.take().or_else(|| rx.blocking_recv()) else {
            break;
        };
        #[cfg(test)]
        shared.test.wait_while_paused();
        let mut bytes = first.payload.size();
        group.push(first);
        while group.len() < max_batches {
            let Ok(job) = rx.try_recv() else { break };
            let size = job.payload.size();
            if bytes.saturating_add(size) > config.max_group_bytes {
                carried = Some(job);
                break;
            }
            bytes += size;
            group.push(job);
        }

        if shared.failed.load(Ordering::Acquire) {
            for job in group.drain(..) {
                job.reply
                    .send(Err(StoreError::Stopped { path: path.clone() }));
            }
            continue;
        }

        let result = write_group(&db, &path, &group, &sync, &shared);
        match result {
            Ok(()) => {
                shared.groups.fetch_add(1, Ordering::Relaxed);
                shared
                    .batches
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                shared.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                for job in group.drain(..) {
                    job.reply.send(Ok(()));
                }
            }
            Err(err) => {
                shared.failed.store(true, Ordering::Release);
                tracing::error!(path = %path.display(), batches = group.len(), error = %err,
                    cause = ?std::error::Error::source(&err).map(ToString::to_string),
                    "synced write failed; the store refuses further writes (fail-stop)");
                for job in group.drain(..) {
                    job.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Writes one group as one synced `WriteBatch`.
fn write_group(
    db: &DB,
    path: &std::path::Path,
    group: &[Job],
    sync: &WriteOptions,
    #[cfg_attr(not(test), allow(unused_variables))] shared: &Shared,
) -> Result<(), StoreError> {
    let mut wb = WriteBatch::default();
    for job in group {
        job.payload.apply(db, path, &mut wb)?;
    }
    #[cfg(test)]
    if shared.test.take_failure() {
        // A real RocksDB error from the real write path: a synced write without a WAL is
        // refused ("Sync writes has to enable WAL").
        let mut broken = WriteOptions::default();
        broken.set_sync(true);
        broken.disable_wal(true);
        return db
            .write_opt(wb, &broken)
            .map_err(|source| StoreError::Write {
                path: path.to_path_buf(),
                batches: group.len(),
                source,
            });
    }
    db.write_opt(wb, sync).map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        batches: group.len(),
        source,
    })
}

#[cfg(test)]
pub(super) mod test_hooks {
    //! Hooks for the unit tests: hold the writer before it drains a group, and make the next
    //! group write fail.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Condvar, Mutex};

    #[derive(Debug, Default)]
    pub(crate) struct Hooks {
        paused: Mutex<bool>,
        resumed: Condvar,
        fail_next: AtomicBool,
    }

    impl Hooks {
        pub(crate) fn set_paused(&self, paused: bool) {
            let mut guard = self.paused.lock().unwrap_or_else(|e| e.into_inner());
            *guard = paused;
            self.resumed.notify_all();
        }

        pub(super) fn wait_while_paused(&self) {
            let guard = self.paused.lock().unwrap_or_else(|e| e.into_inner());
            let _guard = self
                .resumed
                .wait_while(guard, |paused| *paused)
                .unwrap_or_else(|e| e.into_inner());
        }

        pub(crate) fn fail_next(&self) {
            self.fail_next.store(true, Ordering::SeqCst);
        }

        pub(super) fn take_failure(&self) -> bool {
            self.fail_next.swap(false, Ordering::SeqCst)
        }
    }
}
