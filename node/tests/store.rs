//! Integration tests of the durable store (`lienthong_node::store`): durability across
//! reopen, group commit under concurrency, and crash recovery with a real `kill -9`.
//!
//! The crash test re-runs this test binary as a child ("writer child" mode, selected by the
//! `LIENTHONG_STORE_CRASH_CHILD` variable) that commits numbered batches and prints each id
//! only after its commit resolved; the parent kills it mid-stream and checks the database.

// Tests fail by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lienthong_node::store::{Family, Store, StoreConfig, StoreError, WriteOp};
use lienthong_protocol::relay::store::{Batch, Column};
use proptest::prelude::*;

fn key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// A value that depends on the batch and the slot, of varying length.
fn value(id: u64, slot: u8) -> Vec<u8> {
    let len = 200 + (id % 300) as usize;
    (0..len)
        .map(|i| {
            (id as usize)
                .wrapping_mul(31)
                .wrapping_add(i * 7 + slot as usize) as u8
        })
        .collect()
}

/// Batch `id` writes several keys (all or none must survive), overwrites one key that every
/// batch writes, and deletes what the previous batch put in `Deliveries`.
fn numbered_batch(id: u64) -> Batch {
    let mut batch = Batch {
        id,
        ops: Vec::new(),
    };
    batch.put(Column::Envelopes, key(id), value(id, 0));
    batch.put(Column::Seen, key(id), value(id, 1));
    batch.put(Column::Statuses, key(id), value(id, 2));
    batch.put(Column::Deliveries, key(id), value(id, 3));
    if let Some(previous) = id.checked_sub(1) {
        batch.delete(Column::Deliveries, key(previous));
    }
    batch.put(Column::Meta, b"head".to_vec(), key(id));
    batch
}

fn head(store: &Store) -> Option<u64> {
    store
        .get(Column::Meta, b"head")
        .unwrap()
        .map(|v| u64::from_be_bytes(v.try_into().unwrap()))
}

/// Checks that the store holds exactly the numbered batches `0..=head`, each complete, and
/// nothing of any later batch; returns the head.
fn check_prefix(store: &Store) -> Option<u64> {
    let head = head(store);
    let count = head.map_or(0, |h| h + 1);
    for (column, slot) in [
        (Column::Envelopes, 0),
        (Column::Seen, 1),
        (Column::Statuses, 2),
    ] {
        let rows = store.scan(column).unwrap();
        assert_eq!(
            rows.len() as u64,
            count,
            "{column:?}: rows for a batch after the head, or a hole"
        );
        for (id, (k, v)) in (0..).zip(rows) {
            assert_eq!(k, key(id), "{column:?}: hole before batch {id}");
            assert_eq!(
                v,
                value(id, slot),
                "{column:?}: batch {id} has a wrong value"
            );
        }
    }
    let deliveries = store.scan(Column::Deliveries).unwrap();
    let expected: Vec<_> = head.map(|h| (key(h), value(h, 3))).into_iter().collect();
    assert_eq!(
        deliveries, expected,
        "the deletes of earlier batches were not all applied"
    );
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_batches_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        // Through the pipeline: many in flight, outcomes in order.
        let (mut submitter, mut completions) = store.pipeline(16);
        let driver = tokio::spawn(async move {
            for id in 0..200 {
                submitter.submit(numbered_batch(id)).await.unwrap();
            }
        });
        for id in 0..200 {
            let committed = completions.recv().await.unwrap();
            assert_eq!(committed.id, id);
            committed.result.unwrap();
        }
        driver.await.unwrap();
        assert!(completions.recv().await.is_none());
        // And one at a time.
        store.commit(numbered_batch(200)).await.unwrap();
        assert_eq!(check_prefix(&store), Some(200));
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(check_prefix(&store), Some(200));

    // Recovery rows: only what the relay needs to restart (each batch deleted the
    // previous delivery, so one is left).
    let rows: Vec<_> = store.recover_rows().collect::<Result<_, _>>().unwrap();
    assert_eq!(rows, vec![(Column::Deliveries, key(200), value(200, 3))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_fsyncs() {
    const TASKS: usize = 64;
    const ROUNDS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..ROUNDS {
        let start = Arc::new(tokio::sync::Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, start) = (store.clone(), Arc::clone(&start));
                let id = (round * TASKS + task) as u64;
                tokio::spawn(async move {
                    start.wait().await;
                    let mut batch = Batch {
                        id,
                        ops: Vec::new(),
                    };
                    batch.put(Column::Envelopes, key(id), value(id, 0));
                    store.commit(batch).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
    let stats = store.stats();
    assert_eq!(stats.batches, (TASKS * ROUNDS) as u64);
    assert!(
        stats.groups < stats.batches,
        "no grouping: {} fsyncs for {} batches",
        stats.groups,
        stats.batches
    );
    assert_eq!(store.scan(Column::Envelopes).unwrap().len(), TASKS * ROUNDS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_while_running_opens_as_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for id in 0..50 {
        store.commit(numbered_batch(id)).await.unwrap();
    }
    let target = backup.path().join("checkpoint");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for id in 50..100 {
                store.commit(numbered_batch(id)).await.unwrap();
            }
        })
    };
    let to = target.clone();
    store.read(move |s| s.checkpoint(&to)).await.unwrap();
    writer.await.unwrap();

    let copy = Store::open(&target).unwrap();
    // Some prefix of the batches, whole: at least what was committed before the checkpoint.
    assert!(check_prefix(&copy).unwrap() >= 49);
    assert!(matches!(
        store.checkpoint(&target),
        Err(StoreError::Checkpoint { .. })
    ));
}

#[tokio::test]
async fn every_family_is_created_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open_with(dir.path(), StoreConfig::default()).unwrap());
    let store = Store::open(dir.path()).unwrap();
    for family in Family::ALL {
        assert!(store.scan(family).unwrap().is_empty(), "{}", family.name());
    }
}

fn op_strategy() -> impl Strategy<Value = WriteOp> {
    let family = prop::sample::select(vec![Column::Envelopes, Column::Meta, Column::Chunks]);
    // Few, short keys, so that puts overwrite and deletes hit.
    let key = prop::collection::vec(0u8..3, 1..3);
    prop_oneof![
        (
            family.clone(),
            key.clone(),
            prop::collection::vec(any::<u8>(), 0..16)
        )
            .prop_map(|(family, key, value)| WriteOp::Put { family, key, value }),
        (family, key).prop_map(|(family, key)| WriteOp::Delete { family, key }),
    ]
}

type Model = std::collections::BTreeMap<(Family, Vec<u8>), Vec<u8>>;

fn model_rows(model: &Model, family: Family, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    model
        .iter()
        .filter(|((f, k), _)| *f == family && k.starts_with(prefix))
        .map(|((_, k), v)| (k.clone(), v.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Any sequence of atomic writes, applied in order, reads back like a map, before and
    /// after reopening.
    #[test]
    fn writes_read_back_like_a_map(
        batches in prop::collection::vec(prop::collection::vec(op_strategy(), 0..6), 1..12)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut model = Model::new();
        {
            let store = Store::open(dir.path()).unwrap();
            for ops in &batches {
                for op in ops {
                    match op.clone() {
                        WriteOp::Put { family, key, value } => { model.insert((family, key), value); }
                        WriteOp::Delete { family, key } => { model.remove(&(family, key)); }
                    }
                }
                runtime.block_on(store.write(ops.clone())).unwrap();
            }
            for family in [Column::Envelopes, Column::Chunks] {
                prop_assert_eq!(store.scan_prefix(family, &[1]).unwrap(), model_rows(&model, family, &[1]));
            }
        }
        let store = Store::open(dir.path()).unwrap();
        for family in Family::ALL {
            prop_assert_eq!(store.scan(family).unwrap(), model_rows(&model, family, &[]));
        }
        for ((family, key), value) in &model {
            prop_assert_eq!(store.get(*family, key).unwrap(), Some(value.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Crash recovery with a real killed process.

const CHILD_ENV: &str = "LIENTHONG_STORE_CRASH_CHILD";

/// Writer child mode: does nothing unless run by `acknowledged_batches_survive_kill_9`.
/// Commits numbered batches from where the store left off, many in flight, and prints
/// `ack <id>` once each is durable, until killed.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Store::open(&dir).unwrap();
        let start = head(&store).map_or(0, |h| h + 1);
        let (mut submitter, mut completions) = store.pipeline(32);
        let driver = tokio::spawn(async move {
            // Bounded so that an orphaned child cannot fill the disk.
            for id in start..start + 1_000_000 {
                submitter.submit(numbered_batch(id)).await.unwrap();
            }
        });
        while let Some(committed) = completions.recv().await {
            committed.result.unwrap();
            // `println!` flushes at the newline: the parent sees the ack at once.
            println!("ack {}", committed.id);
        }
        driver.await.unwrap();
    });
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse_ack(line: &str) -> Option<u64> {
    line.strip_prefix("ack ")
        .map(|id| id.trim().parse().unwrap())
}

/// A small xorshift generator: the kill points, reproducible from the printed seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Runs one child until it has acknowledged `kill_after` batches, SIGKILLs it, and returns
/// the highest batch id it acknowledged (including acks still in the pipe).
fn run_child_and_kill(dir: &Path, kill_after: u64) -> Option<u64> {
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args([
            "crash_writer_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut acked = 0;
    let mut last = None;
    while acked < kill_after {
        let line = match lines.next() {
            Some(line) => line.unwrap(),
            None => panic!("child exited after {acked} acks: {:?}", child.0.wait()),
        };
        if let Some(id) = parse_ack(&line) {
            assert!(
                last.is_none_or(|l| id == l + 1),
                "acks out of order: {last:?} then {id}"
            );
            last = Some(id);
            acked += 1;
        }
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, nothing runs in the child.
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "{status:?}");
    // Acks the child printed before it died are acknowledgements too.
    for line in lines {
        if let Some(id) = parse_ack(&line.unwrap()) {
            last = Some(id);
        }
    }
    last
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    const ROUNDS: usize = 6;
    let seed = std::env::var("LIENTHONG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed} (replay: LIENTHONG_CRASH_SEED={seed})");
    let mut state = seed;
    let dir = tempfile::tempdir().unwrap();
    let mut previous_head: Option<u64> = None;
    for round in 0..ROUNDS {
        let kill_after = 1 + next_random(&mut state) % 400;
        let acked = run_child_and_kill(dir.path(), kill_after);

        let reopened = Instant::now();
        let store = Store::open(dir.path()).unwrap();
        let recovery = reopened.elapsed();
        let head = check_prefix(&store);
        drop(store);
        eprintln!(
            "round {round}: killed after {kill_after} acks; last ack {acked:?}, recovered head \
             {head:?}, reopened in {recovery:?}"
        );
        assert!(
            head >= acked,
            "round {round}: acked up to {acked:?} but recovered {head:?}"
        );
        assert!(head >= previous_head, "round {round}: the head went back");
        assert!(recovery < Duration::from_secs(5));
        previous_head = head;
    }
}
