//! Sealed payloads: golden vector (checked against an independent re-derivation of the
//! documented format) and property tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hpke::Deserializable as _;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{EncryptionKey, EncryptionSecret};
use lienthong_protocol::seal::{
    CHUNK_SIZE, ChunkId, Manifest, RecipientEpochs, SealError, SenderEpochs, open, open_chunk,
    seal, unwrap_content_key, verify_chunk,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_700_000_000_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn agency(n: u8) -> AgencyId {
    AgencyId::parse(&format!("000.00.00.H{n:02}")).unwrap()
}

// ---------------------------------------------------------------------------------------
// Golden vector

const VECTOR_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/seal.json");
const SEED: [u8; 32] = [0x11; 32];
const PLAINTEXT: &[u8] = b"Lienthong seal test vector: Cong van so 123/VPCP-HC\n";

fn golden_vector() -> String {
    let sender = AgencyId::parse("000.00.00.G22").unwrap();
    let recipient = AgencyId::parse("000.00.00.H41").unwrap();
    let secret_bytes = [0x41u8; 32];
    let secret = EncryptionSecret::from_bytes(&secret_bytes);
    let public = secret.public_key();

    let mut rng = ChaCha20Rng::from_seed(SEED);
    let sealed = seal(
        PLAINTEXT,
        &sender,
        &[(recipient.clone(), public)],
        &mut SenderEpochs::default(),
        NOW,
        &mut rng,
    )
    .unwrap();
    let m = &sealed.manifest;
    assert_eq!(
        open(
            m,
            &sealed.chunks,
            &sender,
            &recipient,
            &secret,
            &mut RecipientEpochs::default()
        )
        .unwrap(),
        PLAINTEXT
    );

    // The content key is the first 32 bytes the RNG gives.
    let mut content_key = [0u8; 32];
    ChaCha20Rng::from_seed(SEED).fill_bytes(&mut content_key);
    let wrap = &m.wraps()[0];
    check_independently(m, &sealed.chunks, &sender, &secret_bytes, &content_key);

    let chunk_ids: Vec<String> = m.chunks().iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        r#"{{
  "description": "lienthong sealed payload v1: one recipient, one chunk",
  "rng": "rand_chacha 0.3 ChaCha20Rng::from_seed([0x11; 32]); seal draws the 32-byte content key first, then the 32-byte HPKE ephemeral IKM (RFC 9180 DeriveKeyPair)",
  "now_ms": {NOW},
  "sender": "{sender}",
  "recipient": "{recipient}",
  "recipient_secret": "{}",
  "recipient_public": "{}",
  "plaintext": "{}",
  "content_key": "{}",
  "epoch_enc": "{}",
  "wrapped": "{}",
  "root": "{}",
  "manifest": "{}",
  "payload_id": "{}",
  "chunk_ids": [{}],
  "chunk0": "{}"
}}
"#,
        hex(&secret_bytes),
        hex(&public.0),
        hex(PLAINTEXT),
        hex(&content_key),
        hex(&wrap.epoch),
        hex(&wrap.wrapped),
        hex(&m.root()),
        hex(m.as_bytes()),
        m.id(),
        chunk_ids.join(", "),
        hex(&sealed.chunks[0]),
    )
}

/// Re-derives the format from the module documentation with the primitives directly, so
/// the vector is checked against the spec and not only against the implementation.
fn check_independently(
    m: &Manifest,
    chunks: &[Vec<u8>],
    sender: &AgencyId,
    secret: &[u8; 32],
    content_key: &[u8; 32],
) {
    type Kem = hpke::kem::X25519HkdfSha256;
    let wrap = &m.wraps()[0];
    let pair = |prefix: &[u8]| {
        let mut v = prefix.to_vec();
        v.extend_from_slice(sender.as_str().as_bytes());
        v.push(0);
        v.extend_from_slice(wrap.to.as_str().as_bytes());
        v
    };
    // Root.
    let mut h = Sha256::new();
    h.update(b"lienthong/v1/chunks");
    h.update(m.total_len().to_be_bytes());
    h.update(CHUNK_SIZE.to_be_bytes());
    for c in m.chunks() {
        h.update(c.0);
    }
    let root: [u8; 32] = h.finalize().into();
    assert_eq!(root, m.root());
    assert_eq!(<[u8; 32]>::from(Sha256::digest(m.as_bytes())), m.id().0);
    // Epoch secret: HPKE base mode, export-only, exporter("lienthong/v1/epoch-key", 32).
    let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(secret).unwrap();
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrap.epoch).unwrap();
    let ctx = hpke::setup_receiver::<hpke::aead::ExportOnlyAead, hpke::kdf::HkdfSha256, Kem>(
        &hpke::OpModeR::Base,
        &sk,
        &enc,
        &pair(b"lienthong/v1/epoch"),
    )
    .unwrap();
    let mut epoch_secret = [0u8; 32];
    ctx.export(b"lienthong/v1/epoch-key", &mut epoch_secret)
        .unwrap();
    // Wrap key and wrapped content key.
    let mut wrap_key = [0u8; 32];
    let mut info = root.to_vec();
    info.extend_from_slice(wrap.to.as_str().as_bytes());
    hkdf::Hkdf::<Sha256>::new(Some(b"lienthong/v1/wrap"), &epoch_secret)
        .expand(&info, &mut wrap_key)
        .unwrap();
    let unwrapped = ChaCha20Poly1305::new(Key::from_slice(&wrap_key))
        .decrypt(
            &Nonce::default(),
            Payload {
                msg: &wrap.wrapped,
                aad: &pair(&root),
            },
        )
        .unwrap();
    assert_eq!(unwrapped, content_key);
    // Chunks: nonce = index BE || last flag || 000000, AAD = label || total_len BE.
    let cipher = ChaCha20Poly1305::new(Key::from_slice(content_key));
    let mut aad = b"lienthong/v1/chunk".to_vec();
    aad.extend_from_slice(&m.total_len().to_be_bytes());
    let mut plain = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(ChunkId(Sha256::digest(c).into()), m.chunks()[i]);
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
        nonce[8] = u8::from(i + 1 == chunks.len());
        plain.extend(
            cipher
                .decrypt(&Nonce::from(nonce), Payload { msg: c, aad: &aad })
                .unwrap(),
        );
    }
    assert_eq!(plain.len() as u64, m.total_len());
}

#[test]
fn golden_vector_matches() {
    let generated = golden_vector();
    if std::env::var_os("LIENTHONG_UPDATE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors")).unwrap();
        std::fs::write(VECTOR_PATH, &generated).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(VECTOR_PATH)
        .expect("tests/vectors/seal.json missing: run with LIENTHONG_UPDATE_VECTORS=1");
    assert_eq!(
        stored, generated,
        "sealed payload format changed; if intended, rerun with LIENTHONG_UPDATE_VECTORS=1"
    );
}

#[test]
fn golden_manifest_decodes_and_opens() {
    let stored = std::fs::read_to_string(VECTOR_PATH).unwrap();
    let field = |name: &str| -> Vec<u8> {
        let start = stored.find(&format!("\"{name}\": \"")).unwrap() + name.len() + 5;
        let end = start + stored[start..].find('"').unwrap();
        (start..end)
            .step_by(2)
            .map(|i| u8::from_str_radix(&stored[i..i + 2], 16).unwrap())
            .collect()
    };
    let m = Manifest::decode(&field("manifest")).unwrap();
    assert_eq!(hex(&m.id().0), hex(&field("payload_id")));
    let secret = EncryptionSecret::from_bytes(&field("recipient_secret").try_into().unwrap());
    let chunk0 = field("chunk0");
    verify_chunk(&m, 0, &chunk0).unwrap();
    let key = unwrap_content_key(
        &m,
        &AgencyId::parse("000.00.00.G22").unwrap(),
        &AgencyId::parse("000.00.00.H41").unwrap(),
        &secret,
        &mut RecipientEpochs::default(),
    )
    .unwrap();
    assert_eq!(
        open_chunk(&m, &key, 0, &chunk0).unwrap(),
        field("plaintext")
    );
}

// ---------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn random_payloads_round_trip_for_every_recipient(
        len in prop_oneof![0usize..2048, 0usize..(2 * CHUNK_SIZE as usize + 100)],
        seed in any::<[u8; 32]>(),
        who in prop::collection::btree_set(1u8..=30, 1..6),
        outsider in 31u8..=40,
    ) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        let parties: Vec<(AgencyId, EncryptionSecret)> = who
            .iter()
            .map(|&n| (agency(n), EncryptionSecret::from_bytes(&[n; 32])))
            .collect();
        let to: Vec<(AgencyId, EncryptionKey)> =
            parties.iter().map(|(id, s)| (id.clone(), s.public_key())).collect();
        let sender = AgencyId::parse("000.00.00.G22").unwrap();
        let sealed = seal(&data, &sender, &to, &mut SenderEpochs::default(), NOW, &mut rng).unwrap();
        let bytes = sealed.manifest.as_bytes();
        prop_assert_eq!(&Manifest::decode(bytes).unwrap(), &sealed.manifest);
        let mut epochs = RecipientEpochs::default();
        for (id, secret) in &parties {
            let opened = open(&sealed.manifest, &sealed.chunks, &sender, id, secret, &mut epochs);
            prop_assert_eq!(opened.unwrap(), data.clone());
        }
        let stranger = EncryptionSecret::from_bytes(&[outsider; 32]);
        let refused = open(&sealed.manifest, &sealed.chunks, &sender, &agency(outsider), &stranger, &mut epochs);
        let is_not_recipient = matches!(refused, Err(SealError::NotARecipient { .. }));
        prop_assert!(is_not_recipient, "outsider got {:?}", refused);
    }
}

fn sample_manifest() -> Vec<u8> {
    static SAMPLE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(make_sample_manifest).clone()
}

fn make_sample_manifest() -> Vec<u8> {
    let mut rng = ChaCha20Rng::from_seed([3; 32]);
    let to: Vec<_> = (1..=3)
        .map(|n| {
            (
                agency(n),
                EncryptionSecret::from_bytes(&[n; 32]).public_key(),
            )
        })
        .collect();
    let sealed = seal(
        &[5u8; 300_000],
        &agency(99),
        &to,
        &mut SenderEpochs::default(),
        NOW,
        &mut rng,
    )
    .unwrap();
    sealed.manifest.as_bytes().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Manifest::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_manifests(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let original = sample_manifest();
        let mut bytes = original.clone();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(m) = Manifest::decode(&bytes) {
            // Anything accepted is canonical, so a changed encoding is a different payload.
            prop_assert_eq!(m.as_bytes(), bytes.as_slice());
            prop_assert_eq!(m.id() == Manifest::decode(&original).unwrap().id(), bytes == original);
            for i in 0..m.chunks().len() + 1 {
                let _ = verify_chunk(&m, i, &[0u8; 64]);
            }
        }
    }
}
