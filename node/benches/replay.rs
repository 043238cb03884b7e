//! Audit replay throughput on a generated ledger of at least 1 M entries (DESIGN §8: ≥ 1 M
//! entries/s hashes only, ≥ 80 k entries/s with every signature checked on both cores).
//!
//! `cargo bench -p lienthong-node --bench replay` generates the ledger into a mirror
//! directory (kept and reused when `LIENTHONG_BENCH_DIR` names one; `LIENTHONG_BENCH_ENTRIES`
//! changes the size), then replays it through `lienthong_node::audit::replay` and prints
//! `name: value` lines (`LIENTHONG_BENCH_ONLY=sig` runs only the runs whose name contains
//! `sig`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Instant;

use lienthong_node::audit::synth::{self, Spec};
use lienthong_node::audit::{Mirror, ReplayOptions, Source, replay};
use lienthong_protocol::audit::Checks;
use lienthong_protocol::keys::VerifyingKey;
use lienthong_protocol::ledger::log_origin;

const FED: &str = "lienthong-bench";

fn main() {
    let target: usize = std::env::var("LIENTHONG_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (dir, _tmp) = match std::env::var_os("LIENTHONG_BENCH_DIR") {
        Some(d) => (PathBuf::from(d), None),
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    };
    let origin = log_origin(FED, "c0");
    let log = synth::log_signer(&origin, 0).unwrap();
    let other = synth::log_signer(&log_origin(FED, "c1"), 1).unwrap();
    let witness = synth::witness("bench-witness", 0).unwrap();
    let held = Mirror::new(&dir)
        .latest()
        .map(|c| c.checkpoint().size())
        .unwrap_or(0);
    if held < target as u64 {
        let started = Instant::now();
        // About 3.4 entries per document.
        let mut documents = target * 10 / 33;
        let ledger = loop {
            let spec = Spec {
                agencies: 200,
                documents,
                federation: FED.into(),
                central: vec![
                    (
                        "c0".into(),
                        VerifyingKey(log.verifier().public_key().to_bytes()),
                    ),
                    (
                        "c1".into(),
                        VerifyingKey(other.verifier().public_key().to_bytes()),
                    ),
                ],
                witness_quorum: 1,
                inject: vec![],
            };
            let l = synth::generate(&spec).unwrap();
            if l.entries.len() >= target {
                break l;
            }
            documents += documents / 20 + 1;
        };
        synth::write_mirror(&ledger, &dir, &log, &origin, std::slice::from_ref(&witness)).unwrap();
        println!("ledger_generate_s: {:.1}", started.elapsed().as_secs_f64());
    }
    let size = Mirror::new(&dir).latest().unwrap().checkpoint().size();
    println!("ledger_entries: {size}");
    let base = ReplayOptions {
        witnesses: vec![witness.public().to_vkey()],
        quiet: true,
        now_ms: Some(synth::T0 + 365 * 86_400_000),
        threads: 2,
        ..ReplayOptions::default()
    };
    let runs = [
        ("replay_hash_per_s", Checks::HashesOnly, false, 2),
        ("replay_hash_tiles_per_s", Checks::HashesOnly, true, 2),
        ("replay_structure_per_s", Checks::Structure, false, 2),
        ("replay_sig_1thread_per_s", Checks::Full, false, 1),
        ("replay_sig_per_s", Checks::Full, false, 2),
        ("replay_sig_tiles_per_s", Checks::Full, true, 2),
    ];
    let only = std::env::var("LIENTHONG_BENCH_ONLY").ok();
    for (name, checks, tiles, threads) in runs {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let opts = ReplayOptions {
            checks,
            check_tiles: tiles,
            threads,
            ..base.clone()
        };
        let started = Instant::now();
        let outcome = replay(&[Source::Dir(dir.clone())], &opts).unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert!(outcome.is_clean(), "{}", outcome.to_text());
        println!("{name}: {:.0}", size as f64 / secs);
    }
}
