//! Seeds the fuzz corpora, so that the fuzzer starts from the accepted side of each
//! decoder instead of having to discover the formats (scripts/fuzz runs it):
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus [VECTORS_DIR]
//!
//! writes valid inputs to `fuzz/corpus/<target>/`, and, from the golden vector files in
//! VECTORS_DIR, to `fuzz/corpus/.vectors/` (read by every target): each file as it is,
//! each hex string in it decoded, and each other token of 8 characters or more. Keys and
//! the roster come from the fixtures in `fuzz/src/lib.rs`, which the targets share.
use std::path::Path;

use lienthong_fuzz::{agency, agency_key, agency_secret, kind, record};
use lienthong_protocol::audit::Replayer;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document;
use lienthong_protocol::edxml;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::ledger::LedgerEntry;
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::rfc6962::{self, Hash, MemoryTree};
use lienthong_protocol::roster::SignedRoster;
use lienthong_protocol::seal::{self, SenderEpochs};
use lienthong_protocol::signed_note::Note;
use lienthong_protocol::status::StatusCode;
use lienthong_protocol::tlog_checkpoint::{Checkpoint, SignedCheckpoint};
use lienthong_protocol::tlog_tiles::{self, TileId};
use rand_chacha::rand_core::SeedableRng;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const G22: &str = "000.00.00.G22";
const H41: &str = "000.00.00.H41";
const H44: &str = "000.46.24.H44";
const T0: u64 = 1_790_000_000_000;

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
    let (g22, h41, h44) = (agency(G22), agency(H41), agency(H44));

    // A document sealed for two recipients, its manifest, and a one-chunk inline payload.
    let doc = document::example_document(&g22, &[h41.clone(), h44.clone()], "Seed document");
    let doc_bytes = doc.to_bytes()?;
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([0x33; 32]);
    let recipients = [
        (h41.clone(), agency_secret(H41).public_key()),
        (h44.clone(), agency_secret(H44).public_key()),
    ];
    let mut epochs = SenderEpochs::default();
    let sealed = seal::seal(&doc_bytes, &g22, &recipients, &mut epochs, T0, &mut rng)?;
    let inline = InlinePayload {
        manifest: sealed.manifest.as_bytes().to_vec(),
        chunk: sealed.chunks.first().cloned().unwrap_or_default(),
    };
    write("document_decode", "example", &doc_bytes)?;

    // edXML: the example document with an attachment, a revoke, and a status message.
    let mut with_file = doc.clone();
    with_file.attachments.push(document::Attachment {
        name: "qd.pdf".into(),
        mime: "application/pdf".into(),
        description: Some("Văn bản ký số".into()),
        data: b"%PDF-1.7 seed".to_vec(),
    });
    write("edxml_import", "document", &edxml::document_to_edxml(&with_file)?)?;
    let mut revoke = doc.clone();
    revoke.header.business = document::BusinessType::Revoke;
    revoke.header.business_reason = Some("Seed reason".into());
    revoke.header.business_ref = Some(edxml::StatusMessage::reference_to(&doc.header));
    write("edxml_import", "revoke", &edxml::document_to_edxml(&revoke)?)?;
    let status = edxml::StatusMessage::for_document(
        &doc.header,
        doc.header.to[0].clone(),
        StatusCode::Rejected,
        T0,
    )
    .with_description("Seed rejection");
    write("edxml_import", "status", &edxml::status_to_edxml(&status)?)?;
    write(
        "seal_manifest",
        "two-recipients",
        sealed.manifest.as_bytes(),
    )?;

    // Envelopes: a document with its payload inline, one fetched by hash, a status.
    let body = |kind, from: &str, to: Vec<_>, seq, prev, routing, payload| EnvelopeBody {
        v: ENVELOPE_VERSION,
        kind,
        from: agency(from),
        to,
        seq,
        prev,
        created_ms: T0 + seq * 1000,
        routing,
        payload,
    };
    let routing = Routing {
        doc_type: Some("CV".into()),
        priority: 2,
        due: Some("2026-12-01".into()),
        ..Routing::default()
    };
    let recipients = vec![h41.clone(), h44.clone()];
    let none = Payload::None;
    let doc_inline = SignedEnvelope::sign_inline(
        body(
            Kind::Document,
            G22,
            recipients.clone(),
            1,
            None,
            routing.clone(),
            none.clone(),
        ),
        &inline,
        &agency_key(G22),
    )?;
    let external = Payload::External {
        manifest: *sealed.manifest.id().as_bytes(),
        size: sealed.manifest.ciphertext_len() + sealed.manifest.as_bytes().len() as u64,
    };
    let doc_external = SignedEnvelope::sign(
        body(
            Kind::Document,
            G22,
            recipients,
            2,
            Some(doc_inline.id()),
            routing,
            external,
        ),
        &agency_key(G22),
    )?;
    let arrived = Routing {
        refers_to: Some(doc_inline.id()),
        status: Some(StatusCode::Arrived),
        ..Routing::default()
    };
    let status = SignedEnvelope::sign(
        body(Kind::Status, H41, vec![g22.clone()], 1, None, arrived, none),
        &agency_key(H41),
    )?;
    let envelopes = [
        ("document-inline", &doc_inline),
        ("document-external", &doc_external),
        ("status", &status),
    ];
    for (name, env) in envelopes {
        write("envelope_decode", name, env.bytes())?;
        write(
            "envelope_decode",
            &format!("{name}-header"),
            &env.header_bytes(),
        )?;
        write("cbor_check", name, env.bytes())?;
        write("content_id_parse", name, env.id().to_string().as_bytes())?;
        write("ledger_entry_decode", name, &env.header_bytes())?;
    }
    write(
        "content_id_parse",
        "zero",
        ContentId([0; 32]).to_string().as_bytes(),
    )?;

    // Relay messages carrying them.
    let push = Wire::Push {
        envelope: doc_inline.bytes().to_vec(),
    };
    let custody = Wire::Custody {
        envelope: doc_external.bytes().to_vec(),
        recipients: vec![h41.clone(), h44.clone()],
    };
    let ack = Wire::CustodyAck {
        id: doc_external.id(),
        accepted: vec![h41.clone()],
        refused: None,
    };
    for (name, msg) in [("push", push), ("custody", custody), ("custody-ack", ack)] {
        write("relay_wire_decode", name, &msg.to_bytes()?)?;
    }

    // The genesis roster, and the ledger entry that records it.
    let genesis = lienthong_fuzz::genesis();
    write("roster_decode", "genesis", &genesis.to_bytes()?)?;
    write("roster_decode", "genesis-inner", &genesis.roster)?;
    write("cbor_check", "roster", &genesis.to_bytes()?)?;
    let roster_entry = LedgerEntry::roster(&genesis, 1).to_bytes();
    write("ledger_entry_decode", "roster", &roster_entry)?;

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

    // A log of the fixture central node: the roster, then the envelopes' headers, with a
    // checkpoint cosigned by the witness after two entries and at the end.
    let entries = [
        roster_entry,
        doc_inline.header_bytes(),
        status.header_bytes(),
        doc_external.header_bytes(),
    ];
    let log = MemoryTree::from_entries(&entries);
    let checkpoint = |size: u64| -> Result<SignedCheckpoint> {
        let c = Checkpoint::new(&lienthong_fuzz::origin(), size, log.root_at(size)?)?;
        let mut signed = c.sign(&lienthong_fuzz::log_signer())?;
        let cosig = lienthong_fuzz::witness().cosign(&c, T0 / 1000 + size)?;
        signed.note_mut().add_signature(cosig)?;
        Ok(signed)
    };
    let (cp2, cp4) = (checkpoint(2)?, checkpoint(4)?);
    write(
        "tlog_checkpoint",
        "text",
        cp4.checkpoint().to_text().as_bytes(),
    )?;
    write("tlog_checkpoint", "cosigned", &cp4.to_bytes())?;
    write("signed_note", "cosigned-checkpoint", &cp4.to_bytes())?;
    let mut audit = vec![0u8]; // Checks::Full
    audit.extend(record(kind::CHECKPOINT, &cp2.to_bytes()));
    for e in &entries {
        audit.extend(record(kind::ENTRY, e));
    }
    audit.extend(record(kind::CHECKPOINT, &cp4.to_bytes()));
    let proof = rfc6962::consistency_proof(&log, 2, 4)?;
    let mut late = vec![u8::try_from(proof.len())?];
    late.extend(rfc6962::encode_proof(&proof));
    late.extend(cp2.to_bytes());
    audit.extend(record(kind::CHECKPOINT_WITH_PROOF, &late));
    write("audit_replay", "log-of-four", &audit)?;
    // The seed log must replay cleanly, so that the fuzzer mutates a valid log.
    let mut replay = Replayer::new(
        lienthong_fuzz::genesis(),
        lienthong_fuzz::log_params(),
        std::collections::BTreeMap::<u64, SignedRoster>::new(),
    )?;
    let mut seen = Vec::new();
    seen.extend(replay.push_checkpoint(&cp2.to_bytes()));
    for (i, e) in (0u64..).zip(&entries) {
        seen.extend(replay.push_entry(i, e));
    }
    seen.extend(replay.push_checkpoint(&cp4.to_bytes()));
    seen.extend(replay.push_checkpoint_with_proof(&cp2.to_bytes(), &proof));
    let report = replay.finish(T0 + 60_000);
    if !seen.is_empty() || !report.violations.is_empty() {
        return Err(format!("the seed log does not replay cleanly: {report:?}").into());
    }
    eprintln!(
        "seeds: audit seed log replays cleanly ({} entries, {} signatures, {} checkpoints compared)",
        report.entries, report.signatures_verified, report.checkpoints.compared
    );

    // Notes and key strings.
    let mut note = Note::new("Lienthong seed note\nsecond line\n")?;
    note.sign(&lienthong_fuzz::log_signer())?;
    write("signed_note", "note", &note.to_bytes())?;
    let vkey = lienthong_fuzz::log_verifier().to_vkey();
    write("signed_note", "vkey", vkey.as_bytes())?;
    let cosigner_vkey = lienthong_fuzz::witness_key().to_vkey();
    write("signed_note", "cosigner-vkey", cosigner_vkey.as_bytes())?;

    // Tiles: canonical paths and an entry bundle.
    let tiles = [
        TileId::hashes(0, 1234, 256)?,
        TileId::hashes(2, 5, 17)?,
        TileId::entries(1_234_067, 3)?,
    ];
    for (i, tile) in tiles.iter().enumerate() {
        write("tlog_tiles", &format!("path-{i}"), tile.path().as_bytes())?;
    }
    let bundle = tlog_tiles::encode_entry_bundle(&entries)?;
    write("tlog_tiles", "bundle", &bundle)?;
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
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
