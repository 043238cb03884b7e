//! Per-document crypto and encoding costs of the protocol core, next to DESIGN §8's anchors:
//! Ed25519 sign / verify_strict / batch verify, envelope encode (validate, canonical CBOR,
//! sign), decode, decode + verify, the canonical-CBOR check and SHA-256 of 1 KiB.
//!
//! The typical envelope is a document to two recipients with a 1 KiB inline sealed payload
//! (plus a 96-byte manifest), about 1.3 KiB on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::cbor;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{
    Signature, SignatureDomain, SigningKey, VerifyingKey, verify_batch,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

fn typical_body(rng: &mut ChaCha20Rng) -> (EnvelopeBody, InlinePayload) {
    let mut chunk = vec![0u8; 1024];
    rng.fill_bytes(&mut chunk);
    let mut manifest = vec![0u8; 96];
    rng.fill_bytes(&mut manifest);
    let body = EnvelopeBody {
        v: ENVELOPE_VERSION,
        kind: Kind::Document,
        from: AgencyId::parse("000.00.00.G22").unwrap(),
        to: vec![
            AgencyId::parse("000.00.00.H41").unwrap(),
            AgencyId::parse("000.00.24.H44").unwrap(),
        ],
        seq: 12_345,
        prev: Some(ContentId([7; 32])),
        created_ms: 1_790_000_000_000,
        routing: Routing {
            doc_type: Some("1".into()),
            priority: 2,
            due: Some("2026-12-01".into()),
            ..Routing::default()
        },
        payload: Payload::None,
    };
    (body, InlinePayload { manifest, chunk })
}

fn ed25519(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let key = SigningKey::generate(&mut rng);
    let public = key.verifying_key();
    let (body, inline) = typical_body(&mut rng);
    let env = SignedEnvelope::sign_inline(body, &inline, &key).unwrap();
    let body = env.signed_body().to_vec();
    let sig = *env.signature();

    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_envelope_body", |b| {
        b.iter(|| key.sign(SignatureDomain::Envelope, black_box(&body)));
    });
    g.bench_function("verify_strict_envelope_body", |b| {
        b.iter(|| {
            public
                .verify(SignatureDomain::Envelope, black_box(&body), &sig)
                .unwrap();
        });
    });
    g.finish();

    let mut g = c.benchmark_group("ed25519_batch");
    for n in [64usize, 1024] {
        let keys: Vec<SigningKey> = (0..n).map(|_| SigningKey::generate(&mut rng)).collect();
        let publics: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut m = body.clone();
                m[..8].copy_from_slice(&(i as u64).to_be_bytes());
                m
            })
            .collect();
        let sigs: Vec<Signature> = keys
            .iter()
            .zip(&messages)
            .map(|(k, m)| k.sign(SignatureDomain::Envelope, m))
            .collect();
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        g.throughput(Throughput::Elements(n as u64));
        if n > 64 {
            g.sample_size(20);
        }
        g.bench_function(format!("verify_batch_{n}"), |b| {
            b.iter(|| verify_batch(SignatureDomain::Envelope, &refs, &sigs, &publics).unwrap());
        });
    }
    g.finish();
}

fn envelope(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let key = SigningKey::generate(&mut rng);
    let public = key.verifying_key();
    let (body, inline) = typical_body(&mut rng);
    let env = SignedEnvelope::sign_inline(body.clone(), &inline, &key).unwrap();
    let bytes = env.bytes().to_vec();
    println!(
        "typical envelope: {} bytes on the wire, {} bytes signed body",
        bytes.len(),
        env.signed_body().len()
    );

    let mut g = c.benchmark_group("envelope_1KiB_inline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("canonical_cbor_encode_body", |b| {
        b.iter(|| cbor::to_canonical(black_box(&body)).unwrap());
    });
    g.bench_function("encode_and_sign", |b| {
        b.iter_batched(
            || body.clone(),
            |body| SignedEnvelope::sign_inline(body, &inline, &key).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.bench_function("decode", |b| {
        b.iter(|| SignedEnvelope::decode(black_box(&bytes)).unwrap());
    });
    g.bench_function("decode_and_verify", |b| {
        b.iter(|| {
            let env = SignedEnvelope::decode(black_box(&bytes)).unwrap();
            env.verify(&public).unwrap();
            env
        });
    });
    g.bench_function("check_canonical", |b| {
        b.iter(|| cbor::check_canonical(black_box(&bytes), usize::MAX).unwrap());
    });
    g.finish();

    let mut data = vec![0u8; 1024];
    rng.fill_bytes(&mut data);
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("1KiB", |b| b.iter(|| Sha256::digest(black_box(&data))));
    g.bench_function("content_id_1KiB", |b| {
        b.iter(|| ContentId::of(black_box(&data)));
    });
    g.finish();
}

criterion_group!(benches, ed25519, envelope);
criterion_main!(benches);
