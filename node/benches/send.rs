//! The send path without networking (DESIGN §8 "send → durable outbox"): validate, seal,
//! sign, store durably with group commit, acknowledge. Prints documents/s and the
//! acknowledgement latency p50/p99 at concurrency 1 and 64 for 1 KiB documents, in-process
//! (the HTTP API and the separate client process of the full scenario come with
//! `scripts/bench`).
//!
//! `cargo bench -p lienthong-node --bench send` (`LIENTHONG_BENCH_DOCS` sets the count).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::percentile;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lienthong_node::driver::{DriverConfig, DriverHandle, Outbound};
use lienthong_node::send::SendPath;
use lienthong_node::store::Store;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::envelope::{Kind, Routing};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::{RelayConfig, Tenant};
use lienthong_protocol::roster::{AgencyEntry, AgencyState, Federation, Roster};

fn roster() -> Arc<Roster> {
    let entry = |code: &str, seed: u8, node: &str| {
        let id = AgencyId::parse(code).unwrap();
        AgencyEntry {
            level: id.level().unwrap(),
            parent: id.parent(),
            id,
            name: code.into(),
            signing_key: SigningKey::from_seed(&[seed; 32]).verifying_key(),
            encryption_key: EncryptionSecret::from_bytes(&[seed; 32]).public_key(),
            node: node.into(),
            addrs: vec![],
            state: AgencyState::Active,
        }
    };
    Arc::new(Roster {
        epoch: 1,
        issued_ms: 0,
        federation: Federation {
            name: "bench".into(),
            threshold: 1,
            root_keys: vec![SigningKey::from_seed(&[9; 32]).verifying_key()],
            witness_quorum: 0,
        },
        agencies: vec![
            entry("000.00.00.G22", 1, "sender"),
            entry("000.00.00.H41", 2, "recipient"),
        ],
        central: vec![],
    })
}

async fn run(send: &SendPath, concurrency: usize, docs: usize) -> (f64, Duration, Duration) {
    let from = AgencyId::parse("000.00.00.G22").unwrap();
    let to = AgencyId::parse("000.00.00.H41").unwrap();
    let document = vec![7u8; 1024];
    let start = Instant::now();
    let per_task = docs / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (send, from, to, document) =
                (send.clone(), from.clone(), to.clone(), document.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let t = Instant::now();
                    send.send_bytes(
                        &from,
                        Kind::Document,
                        vec![to.clone()],
                        Routing::default(),
                        &document,
                    )
                    .await
                    .unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(docs);
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    )
}

/// CPU time (user + system) this process has used so far, in seconds: with the rate, what
/// one document costs the cores (`/proc/self/stat`, clock ticks of 10 ms).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15: indices 11 and 12 from the state (field 3).
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    let docs: usize = std::env::var("LIENTHONG_BENCH_DOCS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4_096);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for concurrency in [1, 64] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let mut config = RelayConfig::new("sender");
            config.max_deliveries = docs * 2;
            let tenants = vec![Tenant {
                id: AgencyId::parse("000.00.00.G22").unwrap(),
                key: SigningKey::from_seed(&[1; 32]),
            }];
            let (driver, mut outbound) = DriverHandle::start(
                DriverConfig {
                    relay: config,
                    roster: roster(),
                    tenants,
                },
                store.clone(),
            )
            .unwrap();
            // The recipient is not connected: drain what would go to the network.
            tokio::spawn(async move {
                while let Some(Outbound::Send { .. } | _) = outbound.recv().await {}
            });
            let send = SendPath::new(driver.clone(), store, roster());
            let docs = if concurrency == 1 { docs / 4 } else { docs };
            let cpu_before = process_cpu_seconds();
            let (rate, p50, p99) = run(&send, concurrency, docs).await;
            let cpu_us = (process_cpu_seconds() - cpu_before) * 1e6 / docs as f64;
            println!("send_1k_c{concurrency}_per_s: {rate:.0}");
            println!("send_1k_c{concurrency}_cpu_us_per_doc: {cpu_us:.0}");
            println!(
                "send_1k_c{concurrency}_ack_p50_ms: {:.2}",
                p50.as_secs_f64() * 1e3
            );
            println!(
                "send_1k_c{concurrency}_ack_p99_ms: {:.2}",
                p99.as_secs_f64() * 1e3
            );
            driver.shutdown().await;
        }
    });
}
