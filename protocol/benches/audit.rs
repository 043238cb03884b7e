//! Audit replay throughput (DESIGN §8: ≥ 1 M entries/s checking hashes only, ≥ 80 k entries/s
//! with every signature checked on both cores).
//!
//! The ledger: 100,000 distinct signed entries from 8 agencies (documents, each followed by
//! its recipient's 01, 03 and 06, all chains and transitions valid), checkpointed and
//! cosigned. The hash-only figure replays 1,048,576 entries made by repeating those headers
//! (hash-only replay does not decode, so repeats cost the same as distinct entries). Every
//! run ends with a checkpoint whose root must match and asserts a clean report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::audit::{Checks, Limits, LogParams, Replayer};
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{
    EncryptionSecret, SignatureDomain, SigningKey, VerifyingKey, verify_batch,
};
use lienthong_protocol::ledger::log_origin;
use lienthong_protocol::rfc6962::TreeBuilder;
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, Roster, SignedRoster,
};
use lienthong_protocol::signed_note::Ed25519Signer;
use lienthong_protocol::status::StatusCode;
use lienthong_protocol::tlog_checkpoint::Checkpoint;
use lienthong_protocol::tlog_cosignature::{Cosigner, TimestampedCosigner};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const SIGNED: usize = 100_000;
const HASHED: usize = 1 << 20;
const AGENCIES: usize = 8;
const T0: u64 = 1_767_225_600_000;

struct Fixture {
    genesis: SignedRoster,
    log: Ed25519Signer,
    witnesses: Vec<Cosigner>,
    entries: Vec<Vec<u8>>,
}

fn dalek(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn origin() -> String {
    log_origin("lienthong-bench", "central-a")
}

fn fixture() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let ids: Vec<AgencyId> = (0..AGENCIES)
        .map(|i| AgencyId::parse(&format!("000.00.00.H{:02}", 10 + i)).unwrap())
        .collect();
    let keys: Vec<SigningKey> = ids.iter().map(|_| SigningKey::generate(&mut rng)).collect();
    let root = SigningKey::generate(&mut rng);
    let roster = Roster {
        epoch: 1,
        issued_ms: T0,
        federation: Federation {
            name: "lienthong-bench".into(),
            threshold: 1,
            root_keys: vec![root.verifying_key()],
            witness_quorum: 2,
        },
        agencies: ids
            .iter()
            .zip(&keys)
            .map(|(id, k)| AgencyEntry {
                id: id.clone(),
                name: format!("Agency {id}"),
                level: 1,
                parent: None,
                signing_key: k.verifying_key(),
                encryption_key: EncryptionSecret::generate(&mut rng).public_key(),
                node: "12D3KooWnode".into(),
                addrs: vec![],
                state: AgencyState::Active,
            })
            .collect(),
        central: ["central-a", "central-b", "central-c"]
            .iter()
            .enumerate()
            .map(|(i, n)| CentralNode {
                name: (*n).into(),
                peer_id: format!("12D3KooWc{i}"),
                addrs: vec![],
                log_key: VerifyingKey(dalek(i as u8 + 1).verifying_key().to_bytes()),
                http_url: format!("http://c{i}.example"),
            })
            .collect(),
    };
    let mut genesis = SignedRoster::propose(&roster).unwrap();
    genesis.sign(&root);

    let mut chains: Vec<(u64, Option<ContentId>)> = vec![(0, None); AGENCIES];
    let mut entries = Vec::with_capacity(SIGNED);
    let mut sign = |from: usize, to: usize, kind, routing, payload, t| {
        let (seq, prev) = chains[from];
        let body = EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind,
            from: ids[from].clone(),
            to: vec![ids[to].clone()],
            seq: seq + 1,
            prev,
            created_ms: t,
            routing,
            payload,
        };
        let env = SignedEnvelope::sign(body, &keys[from]).unwrap();
        chains[from] = (seq + 1, Some(env.id()));
        (env.id(), env.header_bytes())
    };
    let mut i = 0u64;
    while entries.len() < SIGNED {
        let (s, r) = ((i % 8) as usize, ((i + 1 + i / 8 % 7) % 8) as usize);
        let t = T0 + i * 1000;
        let (doc, bytes) = sign(
            s,
            r,
            Kind::Document,
            Routing {
                doc_type: Some("CV".into()),
                due: Some("2026-12-31".into()),
                ..Routing::default()
            },
            Payload::External {
                manifest: [i as u8; 32],
                size: 10_000 + i,
            },
            t,
        );
        entries.push(bytes);
        for (k, code) in [
            StatusCode::Arrived,
            StatusCode::Accepted,
            StatusCode::Completed,
        ]
        .into_iter()
        .enumerate()
        {
            let routing = Routing {
                refers_to: Some(doc),
                status: Some(code),
                ..Routing::default()
            };
            let (_, bytes) = sign(
                r,
                s,
                Kind::Status,
                routing,
                Payload::None,
                t + 60_000 * (k as u64 + 1),
            );
            entries.push(bytes);
        }
        i += 1;
    }
    entries.truncate(SIGNED);
    Fixture {
        genesis,
        log: Ed25519Signer::new(&origin(), dalek(1)).unwrap(),
        witnesses: vec![
            Cosigner::new("central-b", dalek(2)).unwrap(),
            Cosigner::new("central-c", dalek(3)).unwrap(),
        ],
        entries,
    }
}

impl Fixture {
    fn params(&self) -> LogParams {
        LogParams {
            origin: origin(),
            log_key: self.log.verifier(),
            witnesses: self.witnesses.iter().map(Cosigner::public).collect(),
            quorum: 2,
        }
    }

    fn checkpoint<'a>(&self, entries: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut tree = TreeBuilder::new();
        for e in entries {
            tree.push_entry(e);
        }
        let cp = Checkpoint::new(&origin(), tree.size(), tree.root()).unwrap();
        let mut signed = cp.sign(&self.log).unwrap();
        for w in &self.witnesses {
            signed
                .note_mut()
                .sign(&TimestampedCosigner {
                    cosigner: w,
                    timestamp: T0 / 1000,
                })
                .unwrap();
        }
        signed.to_bytes()
    }

    fn replay<'a>(
        &self,
        checks: Checks,
        threads: usize,
        checkpoint: &[u8],
        entries: impl Iterator<Item = &'a [u8]>,
    ) -> u64 {
        let limits = Limits {
            threads,
            ..Limits::default()
        };
        let mut r = Replayer::with_options(
            self.genesis.clone(),
            self.params(),
            BTreeMap::new(),
            checks,
            limits,
        )
        .unwrap();
        assert!(r.push_checkpoint(checkpoint).is_empty());
        for (i, e) in entries.enumerate() {
            r.push_entry(i as u64, e);
        }
        let report = r.finish(T0);
        assert!(report.is_clean(), "{:?}", report.violations.first());
        assert_eq!(report.checkpoints.compared, 1);
        report.entries
    }
}

fn hashed(f: &Fixture) -> impl Iterator<Item = &[u8]> {
    f.entries.iter().cycle().take(HASHED).map(Vec::as_slice)
}

fn signed(f: &Fixture) -> impl Iterator<Item = &[u8]> {
    f.entries.iter().map(Vec::as_slice)
}

fn bench(c: &mut Criterion) {
    let started = Instant::now();
    let f = fixture();
    eprintln!(
        "generated {} signed entries in {:.1} s",
        f.entries.len(),
        started.elapsed().as_secs_f64()
    );
    let cp_hashed = f.checkpoint(hashed(&f));
    let cp_signed = f.checkpoint(signed(&f));

    // What one entry costs, part by part.
    let t = Instant::now();
    let decoded: Vec<SignedEnvelope> = f
        .entries
        .iter()
        .map(|e| SignedEnvelope::decode_header(e).unwrap())
        .collect();
    let per = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / SIGNED as f64;
    eprintln!("decode a header: {:.2} µs", per(t));
    let key_of: BTreeMap<AgencyId, VerifyingKey> = f
        .genesis
        .roster()
        .unwrap()
        .agencies
        .iter()
        .map(|a| (a.id.clone(), a.signing_key))
        .collect();
    let t = Instant::now();
    for chunk in decoded.chunks(256) {
        let msgs: Vec<&[u8]> = chunk.iter().map(SignedEnvelope::signed_body).collect();
        let sigs: Vec<_> = chunk.iter().map(|e| *e.signature()).collect();
        let keys: Vec<_> = chunk.iter().map(|e| key_of[&e.body().from]).collect();
        verify_batch(SignatureDomain::Envelope, &msgs, &sigs, &keys).unwrap();
    }
    eprintln!(
        "keys::verify_batch, per signature (batches of 256): {:.2} µs",
        per(t)
    );
    let dalek_keys: BTreeMap<AgencyId, ed25519_dalek::VerifyingKey> = key_of
        .iter()
        .map(|(id, k)| (id.clone(), k.to_dalek().unwrap()))
        .collect();
    let t = Instant::now();
    for chunk in decoded.chunks(256) {
        let msgs: Vec<Vec<u8>> = chunk
            .iter()
            .map(|e| SignatureDomain::Envelope.message(e.signed_body()))
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let sigs: Vec<_> = chunk
            .iter()
            .map(|e| ed25519_dalek::Signature::from_bytes(&e.signature().0))
            .collect();
        let keys: Vec<_> = chunk.iter().map(|e| dalek_keys[&e.body().from]).collect();
        ed25519_dalek::verify_batch(&refs, &sigs, &keys).unwrap();
    }
    eprintln!(
        "ed25519_dalek::verify_batch with decoded keys, per signature: {:.2} µs",
        per(t)
    );
    let t = Instant::now();
    for e in decoded.iter().take(10_000) {
        e.verify(&key_of[&e.body().from]).unwrap();
    }
    eprintln!(
        "verify_strict, per signature: {:.2} µs",
        t.elapsed().as_secs_f64() * 1e6 / 10_000.0
    );
    // How much a second thread can get on this machine right now (other load shows here).
    let strict = |envs: &[SignedEnvelope]| {
        for e in envs {
            e.verify(&key_of[&e.body().from]).unwrap();
        }
    };
    let t = Instant::now();
    strict(&decoded[..4000]);
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| strict(&decoded[4000..8000]));
        strict(&decoded[8000..12000]);
    });
    let two = t.elapsed().as_secs_f64();
    eprintln!(
        "calibration: 2 threads do {:.2}x the verify_strict work of 1 (2.00 on an idle 2-core machine)",
        2.0 * one / two
    );
    drop(decoded);

    // One timed run of each, printed as entries/s.
    let runs: [(&str, Checks, usize, &[u8], bool); 5] = [
        (
            "hashes only, 1 thread",
            Checks::HashesOnly,
            1,
            &cp_hashed,
            true,
        ),
        (
            "structure (no signatures), 1 thread",
            Checks::Structure,
            1,
            &cp_signed,
            false,
        ),
        (
            "structure (no signatures), 2 threads",
            Checks::Structure,
            2,
            &cp_signed,
            false,
        ),
        (
            "every signature, 1 thread",
            Checks::Full,
            1,
            &cp_signed,
            false,
        ),
        (
            "every signature, 2 threads",
            Checks::Full,
            2,
            &cp_signed,
            false,
        ),
    ];
    for (name, checks, threads, cp, big) in runs {
        let t = Instant::now();
        let n = if big {
            f.replay(checks, threads, cp, hashed(&f))
        } else {
            f.replay(checks, threads, cp, signed(&f))
        };
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "audit replay, {name}: {n} entries in {s:.2} s = {:.0} entries/s",
            n as f64 / s
        );
    }

    let mut g = c.benchmark_group("audit_replay");
    g.sample_size(10);
    g.warm_up_time(std::time::Duration::from_millis(500));
    g.measurement_time(std::time::Duration::from_secs(5));
    g.throughput(Throughput::Elements(HASHED as u64));
    g.bench_function("hashes_only_1M", |b| {
        b.iter(|| black_box(f.replay(Checks::HashesOnly, 1, &cp_hashed, hashed(&f))))
    });
    g.throughput(Throughput::Elements(SIGNED as u64));
    for threads in [1, 2] {
        g.bench_function(format!("signatures_100k_{threads}_threads"), |b| {
            b.iter(|| black_box(f.replay(Checks::Full, threads, &cp_signed, signed(&f))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
