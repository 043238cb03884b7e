//! Durable append throughput of one central node's log, with many concurrent submitters,
//! and checkpoint latency (DESIGN §8: ≥ 20 k entries/s, a checkpoint every ≤ 1 s).
//!
//! A plain harness (criterion's repeated short samples do not fit a throughput run with a
//! 1 s checkpointer). Entries are real ledger entries: envelope headers signed by their
//! agency (≈ 250 bytes), generated before the clock starts. Each append is decoded, checked,
//! deduplicated, hashed into the tree and tiles, and acknowledged only after the fsync of
//! its group. The checkpointer runs as in production (interval 1 s, synced write of each
//! checkpoint).
//!
//! ```sh
//! cargo bench -p lienthong-bootstrap --bench append -- [entries] [submitters...]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lienthong_bootstrap::checkpoint::Checkpoints;
use lienthong_bootstrap::log::{Log, LogConfig};
use lienthong_bootstrap::store::Store;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::SigningKey;
use lienthong_protocol::ledger::LedgerEntry;
use lienthong_protocol::signed_note::Ed25519Signer;

fn entries(n: usize, salt: u64) -> Vec<Vec<u8>> {
    let threads = 2;
    let per = n.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let key = SigningKey::from_seed(&[t as u8 + 1; 32]);
                let from = AgencyId::parse(&format!("000.00.00.G{:02}", t + 1)).unwrap();
                let to = vec![
                    AgencyId::parse("000.00.00.H41").unwrap(),
                    AgencyId::parse("000.00.00.H44").unwrap(),
                ];
                (0..per)
                    .map(|i| {
                        let body = EnvelopeBody {
                            v: ENVELOPE_VERSION,
                            kind: Kind::Document,
                            from: from.clone(),
                            to: to.clone(),
                            seq: i as u64 + 1,
                            prev: (i > 0).then(|| ContentId::of(&(i as u64).to_be_bytes())),
                            created_ms: 1_700_000_000_000 + salt * 10_000_000 + i as u64,
                            routing: Routing::default(),
                            payload: Payload::External {
                                manifest: [7; 32],
                                size: 1024,
                            },
                        };
                        let env = SignedEnvelope::sign(body, &key).unwrap();
                        LedgerEntry::envelope(&env).unwrap().to_bytes()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out: Vec<Vec<u8>> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    out.truncate(n);
    out
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(n: usize, submitters: usize, salt: u64) {
    let data = entries(n, salt);
    let mean_len = data.iter().map(Vec::len).sum::<usize>() / n.max(1);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log = Arc::new(Log::open(store, LogConfig::default()).unwrap());
    let signer = Ed25519Signer::new(
        "bench/central-a",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap();
    let cps = Arc::new(Checkpoints::open(&log, "bench/central-a", signer, vec![]).unwrap());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let checkpointer =
        tokio::spawn(Arc::clone(&cps).run(Arc::clone(&log), Duration::from_secs(1), stop_rx));
    // Record when each checkpoint appears.
    let issued: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let recorder = {
        let issued = Arc::clone(&issued);
        let mut rx = cps.subscribe();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let size = rx.borrow().as_ref().map_or(0, |c| c.checkpoint().size());
                issued.lock().unwrap().push((Instant::now(), size));
            }
        })
    };

    let data = Arc::new(data);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..submitters {
        let (log, data) = (Arc::clone(&log), Arc::clone(&data));
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut i = s;
            while i < data.len() {
                let t0 = Instant::now();
                let r = log.append(data[i].clone()).await.unwrap();
                let now = Instant::now();
                acks.push((now - t0, now, r.index));
                i += submitters;
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    // Wait for the checkpoint covering everything.
    let last = cps
        .wait_covering(n as u64 - 1, Duration::from_secs(5))
        .await
        .expect("a checkpoint covering every entry");
    let _ = stop_tx.send(true);
    checkpointer.await.unwrap();
    recorder.abort();
    let stats = log.stats();
    log.close().await;

    let mut ack_lat: Vec<Duration> = acks.iter().map(|a| a.0).collect();
    ack_lat.sort_unstable();
    let issued = issued.lock().unwrap().clone();
    let mut cp_lat: Vec<Duration> = acks
        .iter()
        .filter_map(|(_, at, index)| {
            issued
                .iter()
                .find(|(t, size)| *size > *index && *t >= *at)
                .map(|(t, _)| *t - *at)
        })
        .collect();
    cp_lat.sort_unstable();
    let gaps: Vec<Duration> = issued.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let max_gap = gaps.iter().max().copied().unwrap_or_default();

    println!(
        "submitters {submitters:>4} | {n} entries of {mean_len} B in {:.2} s = {:.0} entries/s | \
         {} fsync groups (mean {:.0} entries) | ack p50 {:.2} ms p99 {:.2} ms | \
         ack→checkpoint p50 {:.0} ms p99 {:.0} ms max {:.0} ms | {} checkpoints, max gap {:.0} ms, last size {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        stats.groups,
        n as f64 / stats.groups.max(1) as f64,
        percentile(&ack_lat, 0.5).as_secs_f64() * 1e3,
        percentile(&ack_lat, 0.99).as_secs_f64() * 1e3,
        percentile(&cp_lat, 0.5).as_secs_f64() * 1e3,
        percentile(&cp_lat, 0.99).as_secs_f64() * 1e3,
        cp_lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        issued.len(),
        max_gap.as_secs_f64() * 1e3,
        last.checkpoint().size(),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(100_000);
    let levels: Vec<usize> = if nums.len() > 1 {
        nums[1..].to_vec()
    } else {
        vec![1, 64, 512]
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (k, c) in levels.into_iter().enumerate() {
        // One at a time is fsync-bound: a few thousand entries tell its rate.
        let count = if c == 1 { n.min(2_000) } else { n };
        rt.block_on(run(count, c, k as u64));
    }
}
