//! Seeds the fuzz corpora, so that the fuzzer starts from the accepted side of each
//! decoder instead of having to discover the formats (scripts/fuzz runs it):
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus [VECTORS_DIR]
//!
//! writes valid inputs to `fuzz/corpus/<target>/`, and, from the golden vector files in
//! VECTORS_DIR, to `fuzz/corpus/.vectors/` (read by every target): each file as it is,
//! each hex string in it decoded, and each other token of 8 characters or more.
use std::path::Path;

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::rfc6962::{self, MemoryTree};
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, Roster, SignedRoster,
};
use lienthong_protocol::seal::{self, SenderEpochs};
use lienthong_protocol::signed_note::{Ed25519Signer, Note};
use lienthong_protocol::status::StatusCode;
use lienthong_protocol::tlog_checkpoint::Checkpoint;
use lienthong_protocol::tlog_cosignature::Cosigner;
use lienthong_protocol::tlog_tiles::{self, TileId};
use lienthong_protocol::{document, rfc6962::Hash};
use rand_chacha::rand_core::SeedableRng;

fn dalek(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: seeds CORPUS_DIR [VECTORS_DIR]")?;
    let dir = Path::new(&dir);
    if let Some(vectors) = args.next() {
        from_vectors(Path::new(&vectors), &dir.join(".vectors"))?;
    }
    let write = |target: &str, name: &str, bytes: &[u8]| -> Result<()> {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(name), bytes)?;
        Ok(())
    };

    let g22 = AgencyId::parse("000.00.00.G22")?;
    let h41 = AgencyId::parse("000.00.00.H41")?;
    let h44 = AgencyId::parse("000.46.24.H44")?;
    let sender = SigningKey::from_seed(&[1; 32]);

    let document = SignedEnvelope::sign(
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Document,
            from: g22.clone(),
            to: vec![h41.clone(), h44.clone()],
            seq: 1,
            prev: None,
            created_ms: 1_790_000_000_000,
            routing: Routing {
                doc_type: Some("CV".into()),
                priority: 2,
                due: Some("2026-12-01".into()),
                ..Routing::default()
            },
            payload: Payload::External {
                manifest: [7; 32],
                size: 1234,
            },
        },
        &sender,
    )?;
    let status = SignedEnvelope::sign(
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Status,
            from: h41.clone(),
            to: vec![g22.clone()],
            seq: 1,
            prev: None,
            created_ms: 1_790_000_000_500,
            routing: Routing {
                refers_to: Some(document.id()),
                status: Some(StatusCode::Arrived),
                ..Routing::default()
            },
            payload: Payload::None,
        },
        &SigningKey::from_seed(&[2; 32]),
    )?;
    let inline = SignedEnvelope::sign(
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Document,
            from: g22.clone(),
            to: vec![h41.clone()],
            seq: 2,
            prev: Some(document.id()),
            created_ms: 1_790_000_001_000,
            routing: Routing::default(),
            payload: Payload::Inline {
                manifest: vec![0xa0],
                chunk: vec![0; 48],
            },
        },
        &sender,
    )?;
    write("envelope_decode", "document", document.bytes())?;
    write("envelope_decode", "status", status.bytes())?;
    write("envelope_decode", "inline", inline.bytes())?;
    for (name, env) in [("document", &document), ("status", &status)] {
        write("cbor_check", name, env.bytes())?;
        write("content_id_parse", name, env.id().to_string().as_bytes())?;
    }
    write(
        "content_id_parse",
        "zero",
        ContentId([0; 32]).to_string().as_bytes(),
    )?;

    let roots: Vec<SigningKey> = (10u8..13)
        .map(|i| SigningKey::from_seed(&[i; 32]))
        .collect();
    let agency = |id: &AgencyId, name: &str, n: u8| AgencyEntry {
        id: id.clone(),
        name: name.into(),
        level: id.level().unwrap_or(1),
        parent: id.parent(),
        signing_key: SigningKey::from_seed(&[n; 32]).verifying_key(),
        encryption_key: EncryptionSecret::from_bytes(&[n; 32]).public_key(),
        node: format!("12D3KooWnode{n}"),
        addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        state: AgencyState::Active,
    };
    let roster = Roster {
        epoch: 1,
        issued_ms: 1_790_000_000_000,
        federation: Federation {
            name: "lienthong-seed".into(),
            threshold: 2,
            root_keys: roots.iter().map(SigningKey::verifying_key).collect(),
            witness_quorum: 0,
        },
        agencies: vec![
            agency(&g22, "Government Office", 20),
            agency(&h41, "Province 41", 21),
            agency(&h44, "Unit 46, district 24", 22),
        ],
        central: vec![CentralNode {
            name: "central-a".into(),
            peer_id: "12D3KooWcentral".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4100".into()],
            log_key: SigningKey::from_seed(&[30; 32]).verifying_key(),
            http_url: "http://127.0.0.1:8080".into(),
        }],
    };
    roster.validate()?;
    let mut signed = SignedRoster::propose(&roster)?;
    for k in &roots[..2] {
        signed.sign(k);
    }
    let signed_bytes = signed.to_bytes()?;
    write("roster_decode", "signed", &signed_bytes)?;
    write("roster_decode", "inner", &signed.roster)?;
    write("cbor_check", "roster", &signed_bytes)?;

    // Merkle proofs: x || y || mode || proof, as rfc6962_proofs reads them.
    let tree = MemoryTree::from_entries((0..300u64).map(|i| i.to_be_bytes()));
    let proof_input = |x: u64, y: u64, mode: u8, proof: &[Hash]| {
        let mut v = Vec::new();
        v.extend_from_slice(&x.to_le_bytes());
        v.extend_from_slice(&y.to_le_bytes());
        v.push(mode);
        v.extend_from_slice(&rfc6962::encode_proof(proof));
        v
    };
    for (index, size) in [(0, 1), (5, 8), (6, 7), (200, 300)] {
        let proof = rfc6962::inclusion_proof(&tree, index, size)?;
        let name = format!("inclusion-{index}-{size}");
        write(
            "rfc6962_proofs",
            &name,
            &proof_input(index, size, 0, &proof),
        )?;
    }
    for (old, new) in [(1, 2), (3, 7), (4, 8), (100, 300)] {
        let proof = rfc6962::consistency_proof(&tree, old, new)?;
        let name = format!("consistency-{old}-{new}");
        write("rfc6962_proofs", &name, &proof_input(old, new, 1, &proof))?;
    }

    // Signed notes and checkpoints, signed by a log key and cosigned by a witness.
    let log = Ed25519Signer::new("example.com/log", dalek(0x11))?;
    let witness = Cosigner::new("example.com/witness", dalek(0x21))?;
    let checkpoint = Checkpoint::new("example.com/log", 300, tree.root_at(300)?)?;
    let mut signed_cp = checkpoint.sign(&log)?;
    let cosig = witness.cosign(&checkpoint, 1_790_000_000)?;
    signed_cp.note_mut().add_signature(cosig)?;
    write("tlog_checkpoint", "text", checkpoint.to_text().as_bytes())?;
    write("tlog_checkpoint", "cosigned", &signed_cp.to_bytes())?;
    write("signed_note", "cosigned-checkpoint", &signed_cp.to_bytes())?;
    let mut note = Note::new("Lienthong seed note\nsecond line\n")?;
    note.sign(&log)?;
    write("signed_note", "note", &note.to_bytes())?;
    write("signed_note", "vkey", log.verifier().to_vkey().as_bytes())?;
    write(
        "signed_note",
        "cosigner-vkey",
        witness.public().to_vkey().as_bytes(),
    )?;

    // Tiles: canonical paths and an entry bundle.
    for (i, tile) in [
        TileId::hashes(0, 1234, 256)?,
        TileId::hashes(2, 5, 17)?,
        TileId::entries(1_234_067, 3)?,
    ]
    .iter()
    .enumerate()
    {
        write("tlog_tiles", &format!("path-{i}"), tile.path().as_bytes())?;
    }
    let bundle = tlog_tiles::encode_entry_bundle(&[&b"entry 0"[..], b"", b"entry 2"])?;
    write("tlog_tiles", "bundle", &bundle)?;

    // A sealed payload's manifest, the document it carries, and relay messages.
    let doc = document::example_document(&g22, &[h41.clone(), h44.clone()], "Seed document");
    let doc_bytes = doc.to_bytes()?;
    write("document_decode", "example", &doc_bytes)?;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([0x33; 32]);
    let recipients = [
        (
            h41.clone(),
            EncryptionSecret::from_bytes(&[21; 32]).public_key(),
        ),
        (
            h44.clone(),
            EncryptionSecret::from_bytes(&[22; 32]).public_key(),
        ),
    ];
    let mut epochs = SenderEpochs::default();
    let sealed = seal::seal(
        &doc_bytes,
        &g22,
        &recipients,
        &mut epochs,
        1_790_000_000_000,
        &mut rng,
    )?;
    write(
        "seal_manifest",
        "two-recipients",
        sealed.manifest.as_bytes(),
    )?;
    let push = Wire::Push {
        envelope: document.bytes().to_vec(),
    };
    write("relay_wire_decode", "push", &push.to_bytes()?)?;
    let custody = Wire::Custody {
        envelope: document.bytes().to_vec(),
        recipients: vec![h41.clone(), h44.clone()],
    };
    write("relay_wire_decode", "custody", &custody.to_bytes()?)?;
    let ack = Wire::CustodyAck {
        id: document.id(),
        accepted: vec![h41.clone()],
        refused: None,
    };
    write("relay_wire_decode", "custody-ack", &ack.to_bytes()?)?;
    Ok(())
}

/// Seeds from the golden vector files (any format): whole files, decoded hex strings, and
/// other long tokens (printable ids, agency codes, base64).
fn from_vectors(vectors: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let save = |bytes: &[u8]| -> Result<()> {
        let name = ContentId::of(bytes).to_hex();
        std::fs::write(out.join(name), bytes)?;
        Ok(())
    };
    let mut files = vec![vectors.to_path_buf()];
    let mut n = 0usize;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                files.push(entry?.path());
            }
            continue;
        }
        let bytes = std::fs::read(&path)?;
        save(&bytes)?;
        n += 1;
        let text = String::from_utf8_lossy(&bytes);
        let tokens = text.split(|c: char| c.is_whitespace() || "\"',:;()[]{}<>=".contains(c));
        for token in tokens.filter(|t| t.len() >= 8) {
            let hex = token.strip_prefix("0x").unwrap_or(token);
            match decode_hex(hex) {
                Some(raw) => save(&raw)?,
                None => save(token.as_bytes())?,
            }
            n += 1;
        }
    }
    eprintln!("seeds: {n} inputs from {}", vectors.display());
    Ok(())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
