//! Sealed payloads: seal and open with warm epoch caches, and the HPKE epoch setup alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_debug_implementations
)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::EncryptionSecret;
use lienthong_protocol::seal::{RecipientEpochs, SenderEpochs, open, seal, unwrap_content_key};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const NOW: u64 = 1_700_000_000_000;

fn bench_seal(c: &mut Criterion) {
    let sender = AgencyId::parse("000.00.00.G22").unwrap();
    let me = AgencyId::parse("000.00.00.H41").unwrap();
    let secret = EncryptionSecret::from_bytes(&[0x41; 32]);
    let to = [(me.clone(), secret.public_key())];
    let mut rng = ChaCha20Rng::from_seed([1; 32]);

    let mut group = c.benchmark_group("seal");
    for (name, len) in [("1KiB", 1024usize), ("1MiB", 1 << 20)] {
        let data = vec![0x5au8; len];
        group.throughput(Throughput::Bytes(len as u64));
        let mut epochs = SenderEpochs::default();
        seal(&data, &sender, &to, &mut epochs, NOW, &mut rng).unwrap();
        group.bench_with_input(BenchmarkId::new("seal_warm", name), &data, |b, data| {
            b.iter(|| seal(data, &sender, &to, &mut epochs, NOW, &mut rng).unwrap());
        });
        let sealed = seal(&data, &sender, &to, &mut epochs, NOW, &mut rng).unwrap();
        let mut theirs = RecipientEpochs::default();
        open(
            &sealed.manifest,
            &sealed.chunks,
            &sender,
            &me,
            &secret,
            &mut theirs,
        )
        .unwrap();
        group.bench_with_input(BenchmarkId::new("open_warm", name), &sealed, |b, s| {
            b.iter(|| open(&s.manifest, &s.chunks, &sender, &me, &secret, &mut theirs).unwrap());
        });
    }
    group.throughput(Throughput::Elements(1));
    let mut epochs = SenderEpochs::default();
    group.bench_function("epoch_setup_sender", |b| {
        b.iter(|| {
            epochs
                .rotate(&sender, &me, &secret.public_key(), NOW, &mut rng)
                .unwrap()
        });
    });
    let sealed = seal(
        b"x",
        &sender,
        &to,
        &mut SenderEpochs::default(),
        NOW,
        &mut rng,
    )
    .unwrap();
    group.bench_function("epoch_decap_recipient", |b| {
        b.iter(|| {
            let mut cold = RecipientEpochs::new(1);
            unwrap_content_key(&sealed.manifest, &sender, &me, &secret, &mut cold).unwrap()
        });
    });
    let mut warm = RecipientEpochs::default();
    group.bench_function("unwrap_warm", |b| {
        b.iter(|| unwrap_content_key(&sealed.manifest, &sender, &me, &secret, &mut warm).unwrap());
    });
    group.finish();
}

/// The primitives alone, to read the figures above against DESIGN §8 on a loaded machine.
fn bench_baselines(c: &mut Criterion) {
    use chacha20poly1305::aead::{Aead as _, KeyInit as _};
    use sha2::Digest as _;
    let mut group = c.benchmark_group("baseline");
    let data = vec![0x5au8; 1024];
    let cipher = chacha20poly1305::ChaCha20Poly1305::new(&[7u8; 32].into());
    group.bench_function("chacha20poly1305_1KiB", |b| {
        b.iter(|| {
            cipher
                .encrypt(&Default::default(), data.as_slice())
                .unwrap()
        });
    });
    group.bench_function("sha256_1KiB", |b| b.iter(|| sha2::Sha256::digest(&data)));
    group.finish();
}

criterion_group!(benches, bench_seal, bench_baselines);
criterion_main!(benches);
