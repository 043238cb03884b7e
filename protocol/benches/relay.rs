//! The relay core's cost per submitted document, without I/O: what the node's relay driver
//! thread spends on one DMS send (sign, build the batch, track the delivery, make it due,
//! try to push it, retry and hand to custodians those whose time came) when the recipient's
//! node does not answer, from no pending deliveries and from a backlog of 100 000, as in the
//! ingest benchmark (where a send takes about 0.1 ms of the clock). Signing alone is
//! measured beside it, so the bookkeeping is the difference.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::store::{Column, StoreOp, StoreView};
use lienthong_protocol::relay::{Action, Content, Event, Relay, RelayConfig, Submission, Tenant};
use lienthong_protocol::roster::{AgencyEntry, AgencyState, CentralNode, Federation, Roster};

const T0: u64 = 1_790_000_000_000;
const SENDER: &str = "000.00.00.G22";
const RECIPIENT: &str = "000.00.00.H41";
/// Deliveries pending before a measured stretch of sends.
const BACKLOG: usize = 100_000;
/// Sends measured after the backlog (2 s of the clock at 0.1 ms per send).
const STRETCH: usize = 20_000;

/// The rows the relay reads back (envelopes to push), in a hash map: cheaper than any real
/// store, so the figure is the relay's.
#[derive(Default)]
struct Rows(HashMap<(Column, Vec<u8>), Vec<u8>>);

impl StoreView for Rows {
    fn get(&self, column: Column, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(&(column, key.to_vec())).cloned()
    }
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32])
}

fn roster() -> Arc<Roster> {
    let entry = |code: &str, node: &str, n: u8| {
        let id = AgencyId::parse(code).unwrap();
        AgencyEntry {
            name: format!("Agency {id}"),
            level: id.level().unwrap(),
            parent: id.parent(),
            signing_key: key(n).verifying_key(),
            encryption_key: EncryptionSecret::from_bytes(&[n; 32]).public_key(),
            node: node.to_owned(),
            addrs: vec![],
            state: AgencyState::Active,
            id,
        }
    };
    let central = (0..3)
        .map(|i| CentralNode {
            name: format!("central-{i}"),
            peer_id: format!("central-{i}"),
            addrs: vec![],
            log_key: key(100 + i).verifying_key(),
            http_url: format!("http://central-{i}"),
        })
        .collect();
    let roster = Roster {
        epoch: 1,
        issued_ms: T0,
        federation: Federation {
            name: "bench".into(),
            threshold: 1,
            root_keys: vec![key(99).verifying_key()],
            witness_quorum: 1,
        },
        agencies: vec![entry(SENDER, "peer-a", 1), entry(RECIPIENT, "peer-b", 2)],
        central,
    };
    roster.validate().unwrap();
    Arc::new(roster)
}

/// A relay on `peer-a` hosting the sender, its rows and its clock.
struct Sender {
    relay: Relay,
    rows: Rows,
    now: u64,
    request: u64,
}

impl Sender {
    fn new() -> Self {
        let tenant = Tenant {
            id: AgencyId::parse(SENDER).unwrap(),
            key: key(1),
        };
        Self {
            relay: Relay::new(
                RelayConfig {
                    // The backlog grows while measuring; never refuse a send for it.
                    max_deliveries: 10_000_000,
                    ..RelayConfig::new("peer-a")
                },
                roster(),
                vec![tenant],
            ),
            rows: Rows::default(),
            now: T0,
            request: 0,
        }
    }

    /// One DMS send as the driver runs it: submit, persist the batch, report it committed
    /// (which makes the delivery due and pushes it), 0.1 ms of clock per send.
    fn send(&mut self, inline: &InlinePayload) {
        self.request += 1;
        self.now += 1;
        let submission = Submission {
            request: self.request,
            from: AgencyId::parse(SENDER).unwrap(),
            kind: Kind::Document,
            to: vec![AgencyId::parse(RECIPIENT).unwrap()],
            routing: Routing::default(),
            content: Content::Inline(inline.clone()),
            records: Vec::new(),
        };
        self.relay
            .handle(Event::Submit(submission), self.now / 10, &self.rows);
        let mut last = None;
        while let Some(action) = self.relay.poll_action() {
            if let Action::Persist(batch) = action {
                last = Some(batch.id);
                for op in batch.ops {
                    if let StoreOp::Put { column, key, value } = op {
                        self.rows.0.insert((column, key), value);
                    }
                }
            } else {
                black_box(action);
            }
        }
        let batch = last.expect("a submission persists a batch");
        self.relay
            .handle(Event::Committed { batch }, self.now / 10, &self.rows);
        while let Some(action) = self.relay.poll_action() {
            black_box(action);
        }
    }
}

fn inline_1k() -> InlinePayload {
    InlinePayload {
        manifest: vec![7; 96],
        chunk: vec![9; 1024 + 16],
    }
}

fn bench(c: &mut Criterion) {
    let inline = inline_1k();
    let mut g = c.benchmark_group("relay");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("send_1KiB_fresh", |b| {
        b.iter_custom(|iters| {
            let mut sender = Sender::new();
            let start = Instant::now();
            for _ in 0..iters {
                sender.send(&inline);
            }
            start.elapsed()
        });
    });
    let body = EnvelopeBody {
        v: ENVELOPE_VERSION,
        kind: Kind::Document,
        from: AgencyId::parse(SENDER).unwrap(),
        to: vec![AgencyId::parse(RECIPIENT).unwrap()],
        seq: 1,
        prev: None,
        created_ms: T0,
        routing: Routing::default(),
        payload: Payload::None,
    };
    let signing_key = key(1);
    g.bench_function("sign_1KiB_alone", |b| {
        b.iter(|| SignedEnvelope::sign_inline(body.clone(), black_box(&inline), &signing_key))
    });
    // Each iteration is a stretch of sends from a fresh sender with the same backlog, so that
    // every sample measures the same retries and custody hand-overs (one sender growing
    // through all samples made them differ by 2×); the time printed is the stretch's.
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(STRETCH as u64));
    g.bench_function(
        format!("send_{STRETCH}_1KiB_after_backlog_{BACKLOG}"),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut sender = Sender::new();
                    for _ in 0..BACKLOG {
                        sender.send(&inline);
                    }
                    let start = Instant::now();
                    for _ in 0..STRETCH {
                        sender.send(&inline);
                    }
                    total += start.elapsed();
                }
                total
            });
        },
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
