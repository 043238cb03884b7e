//! Durable commit throughput and acknowledgement latency of the node's store: ~1.2 KiB
//! batches (a 1 KiB document's signed envelope, the sender's chain head and two delivery
//! records), each acknowledged only after its group's fsync.
//!
//! `cargo bench -p lienthong-node --bench store` runs the criterion groups (time per round
//! of `concurrency` commits), then prints commits/s, ack p50/p99 and batches per fsync for
//! concurrency 1 and 64 (`Store::commit` from that many tasks) and for the relay driver's
//! pipeline (`Store::pipeline`, window 64). Under `cargo test --benches` it only smoke-runs.

// A benchmark stops at the first failure.
#![allow(clippy::panic)]

mod common;

use common::percentile;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use lienthong_node::store::Store;
use lienthong_protocol::relay::store::{Batch, Column};
use tokio::runtime::Runtime;

/// About 1.2 KiB of keys and values, like the batch of one sent 1 KiB document.
fn document_batch(id: u64) -> Batch {
    let mut cid = [0u8; 32];
    cid[..8].copy_from_slice(&id.to_be_bytes());
    let mut batch = Batch {
        id,
        ops: Vec::new(),
    };
    batch.put(Column::Envelopes, cid.to_vec(), vec![0xa5; 1024]);
    batch.put(
        Column::Chains,
        b"tenant-000.00.00.G01".to_vec(),
        vec![7; 48],
    );
    for recipient in [&b"000.00.01.H01"[..], b"000.00.02.H02"] {
        let mut key = cid.to_vec();
        key.extend_from_slice(recipient);
        batch.put(Column::Deliveries, key, vec![3; 40]);
    }
    batch
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("tokio runtime: {e}"))
}

/// `concurrency` tasks each commit `per_task` batches one after the other; returns the ack
/// latencies.
async fn commit_from_tasks(
    store: &Store,
    concurrency: u64,
    per_task: u64,
    first: u64,
) -> Vec<Duration> {
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task as usize);
                for i in 0..per_task {
                    let started = Instant::now();
                    let id = first + task * per_task + i;
                    if let Err(e) = store.commit(document_batch(id)).await {
                        panic!("commit: {e}");
                    }
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_else(|e| panic!("task: {e}")));
    }
    latencies
}

/// Commits for about `duration` from `concurrency` tasks; returns (commits, elapsed,
/// latencies).
async fn commit_for(
    store: &Store,
    concurrency: u64,
    duration: Duration,
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut id = task << 40;
                while started.elapsed() < duration {
                    let begun = Instant::now();
                    if let Err(e) = store.commit(document_batch(id)).await {
                        panic!("commit: {e}");
                    }
                    latencies.push(begun.elapsed());
                    id += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_else(|e| panic!("task: {e}")));
    }
    (started.elapsed(), latencies)
}

/// The relay driver's way: one task submits in order through a pipeline of `window`, and
/// learns completions in order.
async fn pipeline_for(
    store: &Store,
    window: usize,
    duration: Duration,
) -> (Duration, Vec<Duration>) {
    let (mut submitter, mut completions) = store.pipeline(window);
    let started = Instant::now();
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut latencies = Vec::new();
    let mut next = 0u64;
    loop {
        while in_flight.len() < window && started.elapsed() < duration {
            in_flight.push_back(Instant::now());
            if let Err(e) = submitter.submit(document_batch(next)).await {
                panic!("submit: {e}");
            }
            next += 1;
        }
        let Some(submitted) = in_flight.pop_front() else {
            break;
        };
        match completions.recv().await {
            Some(committed) => {
                if let Err(e) = committed.result {
                    panic!("batch {}: {e}", committed.id);
                }
            }
            None => panic!("completions closed"),
        }
        latencies.push(submitted.elapsed());
    }
    (started.elapsed(), latencies)
}

fn report(
    label: &str,
    store: &Store,
    (elapsed, mut latencies): (Duration, Vec<Duration>),
    before: u64,
) {
    latencies.sort_unstable();
    let fsyncs = store.stats().groups - before;
    let commits = latencies.len();
    println!(
        "{label:<28} {:>8.0} commits/s  ack p50 {:>7.2} ms  p99 {:>7.2} ms  {:>5.1} batches/fsync  ({commits} commits in {:.1} s)",
        commits as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        commits as f64 / fsyncs.max(1) as f64,
        elapsed.as_secs_f64(),
    );
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench_store(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("open: {e}"));

    let mut group = c.benchmark_group("store_commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut first = 1u64 << 50;
    for concurrency in [1u64, 64] {
        group.throughput(Throughput::Elements(concurrency));
        group.bench_function(format!("concurrency_{concurrency}"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                rt.block_on(commit_from_tasks(&store, concurrency, iters, first));
                first += concurrency * iters;
                started.elapsed()
            });
        });
    }
    group.finish();

    let full = std::env::args().any(|a| a == "--bench");
    let duration = if full {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(100)
    };
    println!("\nstore: durable commits of ~1.2 KiB batches (sync WAL, group commit)");
    for concurrency in [1u64, 64] {
        let before = store.stats().groups;
        let run = rt.block_on(commit_for(&store, concurrency, duration));
        report(
            &format!("commit, concurrency {concurrency}"),
            &store,
            run,
            before,
        );
    }
    let before = store.stats().groups;
    let run = rt.block_on(pipeline_for(&store, 64, duration));
    report("pipeline, window 64", &store, run, before);
    drop(store);
    idle_memory(dir.path());
}

const IDLE_CHILD: &str = "LIENTHONG_BENCH_IDLE_STORE";

/// Memory of an idle node: a fresh process (this binary again) opens the database just
/// written, then reads every row (filling the block cache), and reports its RSS.
fn idle_memory(dir: &std::path::Path) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let output = std::process::Command::new(exe)
        .env(IDLE_CHILD, dir)
        .output()
        .unwrap_or_else(|e| panic!("idle child: {e}"));
    print!("{}", String::from_utf8_lossy(&output.stdout));
}

fn idle_child(dir: &str) {
    let start = rss_kib().unwrap_or(0);
    let store = Store::open(dir).unwrap_or_else(|e| panic!("open: {e}"));
    let opened = rss_kib().unwrap_or(0);
    // Streamed, not collected: what stays is the store's own memory (block cache, tables).
    let rows = store.recover_rows().filter(Result::is_ok).count();
    let scanned = rss_kib().unwrap_or(0);
    println!(
        "RSS of a fresh process: {start} KiB at start, {opened} KiB with the store open (idle), \
         {scanned} KiB after reading all {rows} rows"
    );
}

criterion_group!(benches, bench_store);

fn main() {
    if let Ok(dir) = std::env::var(IDLE_CHILD) {
        idle_child(&dir);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
