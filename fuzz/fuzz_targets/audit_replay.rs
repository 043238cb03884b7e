//! The auditor's replay (`audit::Replayer`) over an arbitrary log: a sequence of records
//! (`lienthong_fuzz::record`: kind, 16-bit length, bytes) that are ledger entries, signed
//! checkpoints, checkpoints with a consistency proof, or entries at a wrong index. Replay
//! against the fixture genesis roster and log parameters never panics and reports.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong_fuzz::kind;
use lienthong_protocol::audit::{Checks, Limits, LogParams, Replayer};
use lienthong_protocol::rfc6962;
use lienthong_protocol::roster::SignedRoster;

fn genesis() -> &'static SignedRoster {
    static GENESIS: OnceLock<SignedRoster> = OnceLock::new();
    GENESIS.get_or_init(lienthong_fuzz::genesis)
}

fn log_params() -> &'static LogParams {
    static PARAMS: OnceLock<LogParams> = OnceLock::new();
    PARAMS.get_or_init(lienthong_fuzz::log_params)
}

fuzz_target!(|data: &[u8]| {
    let (checks, mut rest) = match data.split_first() {
        Some((&c, rest)) => (
            match c % 3 {
                0 => Checks::Full,
                1 => Checks::Structure,
                _ => Checks::HashesOnly,
            },
            rest,
        ),
        None => return,
    };
    let limits = Limits {
        batch: 4,
        chain_window: 2,
        max_open_documents: 8,
        max_closed_remembered: 8,
        max_recorded_roots: 8,
        max_pending_checkpoints: 8,
        max_kept_notes: 4,
        max_violations: 64,
        max_stalled_listed: 8,
        max_tracked_agencies: 8,
        ..Limits::default()
    };
    let mut replay = Replayer::with_options(
        genesis().clone(),
        log_params().clone(),
        BTreeMap::<u64, SignedRoster>::new(),
        checks,
        limits,
    )
    .expect("the fixture genesis roster is valid");
    let mut index = 0u64;
    while let Some((&k, tail)) = rest.split_first() {
        let Some((len, tail)) = tail.split_first_chunk::<2>() else {
            break;
        };
        let (item, tail) = tail.split_at(usize::from(u16::from_le_bytes(*len)).min(tail.len()));
        rest = tail;
        match k % 4 {
            kind::ENTRY => {
                let _ = replay.push_entry(index, item);
                index += 1;
            }
            kind::CHECKPOINT => {
                let _ = replay.push_checkpoint(item);
            }
            kind::CHECKPOINT_WITH_PROOF => {
                let Some((&n, item)) = item.split_first() else {
                    continue;
                };
                let (proof, note) = item.split_at((usize::from(n) * 32).min(item.len()));
                if let Ok(proof) = rfc6962::decode_proof(proof) {
                    let _ = replay.push_checkpoint_with_proof(note, &proof);
                }
            }
            _ => {
                let _ = replay.push_entry(index ^ u64::from(k), item);
                index += 1;
            }
        }
    }
    let _ = replay.finish(1_800_000_000_000);
});
