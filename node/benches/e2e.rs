//! End to end over real libp2p on loopback (DESIGN §8 "send → recipient DMS" and "bytes on
//! the wire per delivered byte"): N whole agency nodes (store, relay, network) in this one
//! process, one tenant each, documents sent at a fixed rate between random pairs. Latency
//! runs from the moment a send is scheduled (so a slow node cannot hide its backlog) until
//! the recipient's inbox entry is durable and announced; the sender's acknowledgement is
//! durable too. Wire bytes are libp2p's transport counters (after Noise and Yamux) summed
//! over every node, background traffic included, divided by the plaintext bytes delivered.
//!
//! `cargo bench -p lienthong-node --bench e2e`; `LIENTHONG_BENCH_NODES` (10),
//! `LIENTHONG_BENCH_RATE` (documents/s, 200), `LIENTHONG_BENCH_SECONDS` (per phase, 10).
//! Prints `name: value` lines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

mod common;

use common::percentile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lienthong_node::federation::{LocalFederation, NodeSpec, free_loopback_port};
use lienthong_node::node::Node;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::{Attachment, example_document};
use lienthong_protocol::envelope::{Kind, Routing};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

type Seen = Arc<Mutex<HashMap<ContentId, Instant>>>;

struct Phase {
    latencies: Vec<Duration>,
    wire_per_byte: f64,
    delivered: usize,
}

async fn phase(
    nodes: &[Node],
    tenants: &[AgencyId],
    delivered: &Seen,
    attachment: usize,
    rate: u64,
    seconds: u64,
    rng: &mut ChaCha20Rng,
) -> Phase {
    let wire_before: u64 = nodes.iter().map(|n| n.net().wire_bytes().outbound).sum();
    let total = usize::try_from(rate * seconds).unwrap();
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    let mut plaintext_len = 0usize;
    for i in 0..total {
        interval.tick().await;
        let from = usize::try_from(rng.next_u32()).unwrap() % nodes.len();
        let to =
            (from + 1 + usize::try_from(rng.next_u32()).unwrap() % (nodes.len() - 1)) % nodes.len();
        let mut document = example_document(
            &tenants[from],
            std::slice::from_ref(&tenants[to]),
            &format!("Văn bản đo {i}"),
        );
        let mut data = vec![0u8; attachment];
        rng.fill_bytes(&mut data);
        document.attachments = vec![Attachment {
            name: "phu-luc.pdf".into(),
            mime: "application/pdf".into(),
            description: None,
            data,
        }];
        plaintext_len = document.to_bytes().unwrap().len();
        let send = nodes[from].send_path().clone();
        let sender = tenants[from].clone();
        let scheduled = Instant::now();
        sends.spawn(async move {
            let id = send
                .send_document(&sender, Kind::Document, Routing::default(), &document)
                .await
                .unwrap();
            (id, scheduled)
        });
    }
    let mut scheduled = HashMap::new();
    while let Some(result) = sends.join_next().await {
        let (id, at) = result.unwrap();
        scheduled.insert(id, at);
    }
    // Wait (bounded) until every document is announced at its recipient.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = {
            let seen = delivered.lock().unwrap();
            scheduled.keys().filter(|id| seen.contains_key(*id)).count()
        };
        if done == scheduled.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wire_after: u64 = nodes.iter().map(|n| n.net().wire_bytes().outbound).sum();
    let seen = delivered.lock().unwrap();
    let mut latencies: Vec<Duration> = scheduled
        .iter()
        .filter_map(|(id, at)| seen.get(id).map(|d| d.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    let delivered_count = latencies.len();
    Phase {
        latencies,
        wire_per_byte: (wire_after - wire_before) as f64
            / (delivered_count.max(1) * plaintext_len) as f64,
        delivered: delivered_count,
    }
}

fn main() {
    let count = usize::try_from(env("LIENTHONG_BENCH_NODES", 10)).unwrap();
    let rate = env("LIENTHONG_BENCH_RATE", 200);
    let seconds = env("LIENTHONG_BENCH_SECONDS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let tenants: Vec<AgencyId> = (1..=count)
            .map(|i| AgencyId::parse(&format!("000.00.00.H{i:02}")).unwrap())
            .collect();
        let specs: Vec<NodeSpec> = tenants
            .iter()
            .map(|t| NodeSpec {
                name: format!("node-{t}"),
                central: false,
                tenants: vec![(t.clone(), format!("Agency {t}"))],
                port: free_loopback_port(),
                http_port: None,
                host: std::net::Ipv4Addr::LOCALHOST,
            })
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let fed = LocalFederation::generate("bench", &specs, 3, 2, &mut rng).unwrap();
        let dirs: Vec<_> = specs.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let node = Node::start(fed.setup(i, dir.path()).unwrap())
                .await
                .unwrap();
            node.listen_addrs().await;
            nodes.push(node);
        }
        let delivered: Seen = Arc::default();
        for node in &nodes {
            let mut inbox = node.driver().subscribe();
            let delivered = Arc::clone(&delivered);
            tokio::spawn(async move {
                while let Ok(d) = inbox.recv().await {
                    delivered
                        .lock()
                        .unwrap()
                        .entry(d.id)
                        .or_insert_with(Instant::now);
                }
            });
        }
        // Measure once every node is connected to every other (each dials the roster at
        // start); re-checked, not slept on.
        let everyone = u64::try_from(count - 1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while nodes.iter().any(|n| {
            n.net()
                .metrics()
                .connected_peers
                .load(std::sync::atomic::Ordering::Relaxed)
                < everyone
        }) {
            assert!(Instant::now() < deadline, "the nodes never all connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (label, size) in [("1k", 1024usize), ("64k", 64 * 1024)] {
            let result = phase(&nodes, &tenants, &delivered, size, rate, seconds, &mut rng).await;
            let l = &result.latencies;
            println!("e2e_docs_{label}_{count}: {}", result.delivered);
            if !l.is_empty() {
                println!("e2e_p50_ms_{label}_{count}: {:.2}", ms(percentile(l, 0.5)));
                println!("e2e_p99_ms_{label}_{count}: {:.2}", ms(percentile(l, 0.99)));
                println!("e2e_max_ms_{label}_{count}: {:.2}", ms(l[l.len() - 1]));
            }
            println!("wire_per_byte_{label}_{count}: {:.3}", result.wire_per_byte);
        }
        for node in nodes {
            node.shutdown().await;
        }
    });
}
