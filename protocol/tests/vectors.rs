//! Golden vectors for the protocol core: keys and key files from fixed seeds, one signed
//! envelope of each shape (bytes, content id, signature), a 2-of-3 signed roster, the edXML
//! document plaintext, deterministic CBOR encodings and the status transition table.
//!
//! `golden_core_vectors` regenerates `tests/vectors/core.txt` and compares it line by line;
//! any change to an encoding, a signature input, a fingerprint or a key-file layout fails
//! here. If the change is intended, rewrite the file with `LIENTHONG_UPDATE_VECTORS=1` and
//! review the diff. `committed_envelopes_decode_and_verify` reads the committed bytes back
//! through the decoders, so old wire bytes stay readable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::cbor;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::{BusinessType, Document, example_document};
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::{
    EncryptionSecret, KeyFile, SignatureDomain, SigningKey, VerifyingKey,
};
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, Roster, RosterBook, SignedRoster,
};
use lienthong_protocol::status::{Stage, StatusChain, StatusCode};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::Serialize;
use sha2::{Digest, Sha256};

const FILE: &str = "core.txt";

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(FILE)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn signing(seed: u64) -> SigningKey {
    SigningKey::generate(&mut rng(seed))
}

fn encryption(seed: u64) -> EncryptionSecret {
    EncryptionSecret::generate(&mut rng(seed))
}

fn id(s: &str) -> AgencyId {
    AgencyId::parse_any(s).unwrap()
}

/// The fixed cast: (agency, signing-key seed, encryption-key seed).
const CAST: [(&str, u64, u64); 4] = [
    ("000.00.00.G01", 5, 6),
    ("000.00.00.G22", 1, 2),
    ("000.00.00.H41", 3, 4),
    ("000.00.24.H44", 7, 8),
];
/// Root keys of the central office (3 of them; the roster needs 2).
const ROOT_SEEDS: [u64; 3] = [101, 102, 103];
const CREATED_MS: u64 = 1_790_000_000_000;

fn seeds_of(agency: &str) -> (u64, u64) {
    CAST.iter()
        .find(|(a, _, _)| *a == agency)
        .map(|(_, s, e)| (*s, *e))
        .unwrap()
}

/// Writes `label <len>` then the bytes as hex, 64 bytes per indented line.
fn hex_block(w: &mut String, label: &str, bytes: &[u8]) {
    writeln!(w, "{label} {}", bytes.len()).unwrap();
    for chunk in bytes.chunks(64) {
        writeln!(w, "  {}", hex(chunk)).unwrap();
    }
}

/// Reads back the block written by [`hex_block`] under `label` after the line `section`.
fn read_hex_block(text: &str, section: &str, label: &str) -> Vec<u8> {
    let mut lines = text
        .lines()
        .skip_while(|l| *l != section)
        .skip_while(|l| !l.starts_with(&format!("{label} ")));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("{section}: no {label}"));
    let len: usize = head[label.len() + 1..].parse().unwrap();
    let bytes: Vec<u8> = lines
        .take_while(|l| l.starts_with("  "))
        .flat_map(|l| unhex(l.trim()))
        .collect();
    assert_eq!(bytes.len(), len, "{section}: {label} length");
    bytes
}

fn read_field<'a>(text: &'a str, section: &str, name: &str) -> &'a str {
    text.lines()
        .skip_while(|l| *l != section)
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{section}: no {name}"))
}

fn roster_fixture() -> Roster {
    let roots: Vec<VerifyingKey> = ROOT_SEEDS
        .iter()
        .map(|s| signing(*s).verifying_key())
        .collect();
    let agencies = CAST
        .iter()
        .map(|(agency, s, e)| {
            let id = id(agency);
            AgencyEntry {
                level: id.level().unwrap(),
                parent: id.parent(),
                name: format!("Agency {agency}"),
                signing_key: signing(*s).verifying_key(),
                encryption_key: encryption(*e).public_key(),
                node: format!("12D3KooWnode{}", &agency[10..]),
                addrs: vec![format!("/ip4/10.0.0.{s}/udp/4001/quic-v1")],
                state: AgencyState::Active,
                id,
            }
        })
        .collect();
    Roster {
        epoch: 1,
        issued_ms: CREATED_MS,
        federation: Federation {
            name: "lienthong-golden".into(),
            threshold: 2,
            root_keys: roots,
            witness_quorum: 1,
        },
        agencies,
        central: vec![
            CentralNode {
                name: "central-a".into(),
                peer_id: "12D3KooWcentralA".into(),
                addrs: vec!["/ip4/10.0.1.1/udp/4001/quic-v1".into()],
                log_key: signing(201).verifying_key(),
                http_url: "https://a.central.invalid".into(),
            },
            CentralNode {
                name: "central-b".into(),
                peer_id: "12D3KooWcentralB".into(),
                addrs: vec![],
                log_key: signing(202).verifying_key(),
                http_url: "https://b.central.invalid".into(),
            },
        ],
    }
}

/// The roster signed by roots 0 and 2 (2 of 3).
fn signed_roster() -> SignedRoster {
    let mut s = SignedRoster::propose(&roster_fixture()).unwrap();
    s.sign(&signing(ROOT_SEEDS[2]));
    s.sign(&signing(ROOT_SEEDS[0]));
    s
}

/// The golden envelopes, in order: (name, sender, description, signed envelope).
fn envelopes() -> Vec<(&'static str, &'static str, &'static str, SignedEnvelope)> {
    let g22 = id("000.00.00.G22");
    let h41 = id("000.00.00.H41");
    let h44 = id("000.00.24.H44");
    let sign_with = |agency: &str, body: EnvelopeBody, inline: Option<InlinePayload>| {
        let key = signing(seeds_of(agency).0);
        let env = match inline {
            Some(inline) => SignedEnvelope::sign_inline(body, &inline, &key).unwrap(),
            None => SignedEnvelope::sign(body, &key).unwrap(),
        };
        // Self-check: what we commit decodes to the same thing and verifies.
        let back = SignedEnvelope::decode(env.bytes()).unwrap();
        assert_eq!(back, env);
        back.verify(&signing(seeds_of(agency).0).verifying_key())
            .unwrap();
        env
    };
    let sign = |agency: &str, body: EnvelopeBody| sign_with(agency, body, None);

    let document = sign(
        "000.00.00.G22",
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Document,
            from: g22.clone(),
            to: vec![h41.clone(), h44.clone()],
            seq: 1,
            prev: None,
            created_ms: CREATED_MS,
            routing: Routing {
                doc_type: Some("1".into()),
                priority: 2,
                due: Some("2026-12-01".into()),
                ..Routing::default()
            },
            payload: Payload::External {
                manifest: Sha256::digest(b"lienthong golden manifest").into(),
                size: 1_234_567,
            },
        },
    );
    let status = sign(
        "000.00.00.H41",
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Status,
            from: h41.clone(),
            to: vec![g22.clone()],
            seq: 1,
            prev: None,
            created_ms: CREATED_MS + 1_500,
            routing: Routing {
                refers_to: Some(document.id()),
                status: Some(StatusCode::Arrived),
                ..Routing::default()
            },
            payload: Payload::None,
        },
    );
    let mut chunk = vec![0u8; 48];
    rng(9).fill_bytes(&mut chunk);
    let update = sign_with(
        "000.00.00.G22",
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Update,
            from: g22,
            to: vec![h41, h44],
            seq: 2,
            prev: Some(document.id()),
            created_ms: CREATED_MS + 60_000,
            routing: Routing {
                doc_type: Some("1".into()),
                refers_to: Some(document.id()),
                ..Routing::default()
            },
            payload: Payload::None,
        },
        Some(InlinePayload {
            manifest: b"opaque golden manifest bytes".to_vec(),
            chunk,
        }),
    );
    let roster = sign(
        "000.00.00.G01",
        EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Roster,
            from: id("000.00.00.G01"),
            to: vec![],
            seq: 1,
            prev: None,
            created_ms: CREATED_MS,
            routing: Routing::default(),
            payload: Payload::Roster(signed_roster().to_bytes().unwrap()),
        },
    );
    vec![
        (
            "document",
            "000.00.00.G22",
            "kind document, seq 1, External payload (manifest = SHA-256 of \"lienthong golden manifest\")",
            document,
        ),
        (
            "status",
            "000.00.00.H41",
            "kind status 01, refers to the document envelope, no payload",
            status,
        ),
        (
            "update",
            "000.00.00.G22",
            "kind update, seq 2 chained to the document, refers to it, Inline payload (opaque bytes)",
            update,
        ),
        (
            "roster",
            "000.00.00.G01",
            "kind roster, no recipients, payload = the signed roster below",
            roster,
        ),
    ]
}

fn cbor_line<T: Serialize + ?Sized>(w: &mut String, what: &str, value: &T) {
    let bytes = cbor::to_canonical(value).unwrap();
    cbor::check_canonical(&bytes, usize::MAX).unwrap();
    writeln!(w, "cbor {what} = {}", hex(&bytes)).unwrap();
}

fn cbor_section(w: &mut String) {
    use ciborium::Value;
    writeln!(w, "\n## Deterministic CBOR: cbor <value> = <hex>").unwrap();
    for n in [
        0u64,
        23,
        24,
        255,
        256,
        65_535,
        65_536,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        u64::MAX,
    ] {
        cbor_line(w, &format!("u64 {n}"), &n);
    }
    for n in [-1i64, -24, -25, -256, -257, -65_537, i64::MIN] {
        cbor_line(w, &format!("i64 {n}"), &n);
    }
    let min_negative = Value::Integer((-(1i128 << 64)).try_into().unwrap());
    cbor_line(w, "integer -2^64", &min_negative);
    cbor_line(w, "true", &true);
    cbor_line(w, "false", &false);
    cbor_line(w, "none (null)", &None::<u8>);
    cbor_line(w, "text \"\"", "");
    cbor_line(w, "text \"a\"", "a");
    cbor_line(w, "text \"Hà Nội\"", "Hà Nội");
    cbor_line(w, "text 24 x \"x\"", &"x".repeat(24));
    cbor_line(w, "bytes []", serde_bytes::Bytes::new(&[]));
    let counting: Vec<u8> = (0u8..32).collect();
    cbor_line(w, "bytes 00..1f", serde_bytes::Bytes::new(&counting));
    cbor_line(
        w,
        "array [1, [2, 3], []]",
        &(1u8, (2u8, 3u8), Vec::<u8>::new()),
    );
    cbor_line(w, "array 0..24", &(0u8..24).collect::<Vec<_>>());
    let text_map: BTreeMap<&str, u8> = [("b", 1), ("a", 2), ("aa", 3), ("B", 4)].into();
    cbor_line(
        w,
        "map {\"b\":1,\"a\":2,\"aa\":3,\"B\":4} (shorter keys first)",
        &text_map,
    );
    let int_map = Value::Map(vec![
        (Value::from(-1i64), Value::from("minus one")),
        (Value::from(100u64), Value::from("hundred")),
        (Value::from(10u64), Value::from("ten")),
        (Value::from("k"), Value::Null),
    ]);
    cbor_line(w, "map {-1, 100, 10, \"k\"} (bytewise key order)", &int_map);
    let nested = Value::Map(vec![(
        Value::from("z"),
        Value::Map(vec![
            (Value::from("b"), Value::from(2u8)),
            (Value::from("a"), Value::from(1u8)),
        ]),
    )]);
    cbor_line(w, "map {\"z\": {\"b\":2,\"a\":1}} (nested sorted)", &nested);
    cbor_line(w, "agency id 000.46.24.H44", &id("000.46.24.H44"));
    cbor_line(w, "agency id other form 010203040506", &id("010203040506"));
    cbor_line(w, "content id of \"\"", &ContentId::of(b""));
    cbor_line(w, "status 01", &StatusCode::Arrived);
    cbor_line(w, "status 16", &StatusCode::RecallRefused);
    cbor_line(w, "kind update", &Kind::Update);
    cbor_line(w, "business type replace", &BusinessType::Replace);
    cbor_line(w, "routing default", &Routing::default());
    cbor_line(w, "payload none", &Payload::None);
    cbor_line(
        w,
        "payload external [0x11; 32] size 1000",
        &Payload::External {
            manifest: [0x11; 32],
            size: 1000,
        },
    );
    cbor_line(
        w,
        "payload inline digest 07..07 size 9",
        &Payload::Inline {
            digest: [7; 32],
            size: 9,
        },
    );
    cbor_line(w, "payload roster 00", &Payload::Roster(vec![0]));
    cbor_line(
        w,
        "agency state succeeded by 000.00.00.H41",
        &AgencyState::SucceededBy(id("000.00.00.H41")),
    );
}

fn chain_name(c: &StatusChain) -> String {
    let stage = match c.stage {
        Stage::Sent => "sent".to_owned(),
        Stage::At(code) => code.as_str().to_owned(),
        Stage::Recalled => "recalled".to_owned(),
    };
    if c.request_pending {
        format!("{stage}+13")
    } else {
        stage
    }
}

/// Every reachable (stage, pending) state and what each code does from it.
fn transition_section(w: &mut String) {
    writeln!(
        w,
        "\n## Status transitions from every reachable state (+13 = a request is pending)"
    )
    .unwrap();
    writeln!(
        w,
        "# state: code>next ... (codes refused from that state are omitted)"
    )
    .unwrap();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([StatusChain::default()]);
    let mut lines = BTreeMap::new();
    while let Some(chain) = queue.pop_front() {
        let name = chain_name(&chain);
        if !seen.insert(name.clone()) {
            continue;
        }
        let mut moves = Vec::new();
        for code in StatusCode::ALL {
            if let Ok(next) = chain.apply(code.party(), code) {
                moves.push(format!("{code}>{}", chain_name(&next)));
                queue.push_back(next);
            }
        }
        let moves = if moves.is_empty() {
            "(final)".to_owned()
        } else {
            moves.join(" ")
        };
        lines.insert(name, moves);
    }
    for (state, moves) in lines {
        writeln!(w, "state {state}: {moves}").unwrap();
    }
}

fn golden() -> String {
    let mut o = String::new();
    let w = &mut o;
    writeln!(w, "# Golden vectors for lienthong-protocol's core formats.").unwrap();
    writeln!(
        w,
        "# Generated by protocol/tests/vectors.rs (golden_core_vectors); rewrite with"
    )
    .unwrap();
    writeln!(
        w,
        "# LIENTHONG_UPDATE_VECTORS=1 and review the diff: every line here is a wire format."
    )
    .unwrap();
    writeln!(
        w,
        "# Keys: SigningKey::generate / EncryptionSecret::generate on ChaCha20Rng::seed_from_u64(seed)."
    )
    .unwrap();
    writeln!(
        w,
        "# Hex blocks: `<label> <length>` then 64 bytes per indented line."
    )
    .unwrap();

    writeln!(w, "\n## Keys: <agency> (signing seed, encryption seed)").unwrap();
    for (agency, s, e) in CAST {
        let sk = signing(s);
        let ek = encryption(e);
        writeln!(w, "\n### key {agency} (seeds {s}, {e})").unwrap();
        writeln!(w, "signing-public {}", hex(&sk.verifying_key().0)).unwrap();
        writeln!(
            w,
            "signing-fingerprint {}",
            sk.verifying_key().fingerprint()
        )
        .unwrap();
        writeln!(w, "encryption-public {}", hex(&ek.public_key().0)).unwrap();
        writeln!(
            w,
            "encryption-fingerprint {}",
            ek.public_key().fingerprint()
        )
        .unwrap();
    }
    for (i, s) in ROOT_SEEDS.iter().enumerate() {
        let k = signing(*s).verifying_key();
        writeln!(w, "root {i} (seed {s}) {} {}", hex(&k.0), k.fingerprint()).unwrap();
    }
    let sk = signing(1);
    let message = b"lienthong golden message";
    writeln!(
        w,
        "\nenvelope-domain-signature seed 1 over {:?}: {}",
        std::str::from_utf8(message).unwrap(),
        hex(&sk.sign(SignatureDomain::Envelope, message).0)
    )
    .unwrap();
    writeln!(
        w,
        "roster-domain-signature seed 1 over the same: {}",
        hex(&sk.sign(SignatureDomain::Roster, message).0)
    )
    .unwrap();

    writeln!(w, "\n## Key files (seeds 1 and 2: 000.00.00.G22)").unwrap();
    for text in [
        KeyFile::signing("000.00.00.G22", &signing(1)).to_text(),
        KeyFile::encryption("000.00.00.G22", &encryption(2)).to_text(),
    ] {
        let parsed = KeyFile::parse(&text).unwrap();
        assert_eq!(*parsed.to_text(), *text);
        writeln!(w, "-----BEGIN KEY FILE-----").unwrap();
        w.push_str(&text);
        writeln!(w, "-----END KEY FILE-----").unwrap();
    }

    writeln!(w, "\n## Content ids").unwrap();
    for input in ["", "hello"] {
        let cid = ContentId::of(input.as_bytes());
        writeln!(w, "content-id of {input:?}: {cid} {}", cid.to_hex()).unwrap();
    }

    for (name, sender, what, env) in envelopes() {
        writeln!(w, "\n## envelope {name}").unwrap();
        writeln!(w, "# {what}; signed by {sender}").unwrap();
        writeln!(w, "id {}", env.id()).unwrap();
        writeln!(w, "id-hex {}", env.id().to_hex()).unwrap();
        writeln!(w, "signature {}", hex(&env.signature().0)).unwrap();
        hex_block(w, "bytes", env.bytes());
    }

    let signed = signed_roster();
    let book = RosterBook::genesis(signed.clone()).unwrap();
    assert_eq!(book.current(), &roster_fixture());
    writeln!(w, "\n## signed roster").unwrap();
    writeln!(
        w,
        "# epoch 1, the four agencies above, 2 central nodes (log keys seeds 201, 202),"
    )
    .unwrap();
    writeln!(w, "# threshold 2 of roots 0..2, signed by roots 0 and 2").unwrap();
    for s in &signed.sigs {
        writeln!(w, "sig {} {}", s.key.fingerprint(), hex(&s.sig.0)).unwrap();
    }
    hex_block(w, "roster-bytes", &signed.roster);
    hex_block(w, "signed-bytes", &signed.to_bytes().unwrap());

    let doc = example_document(
        &id("000.00.00.G22"),
        &[id("000.00.00.H41"), id("000.00.24.H44")],
        "Về việc thử nghiệm liên thông văn bản",
    );
    let doc_bytes = doc.to_bytes().unwrap();
    assert_eq!(Document::from_bytes(&doc_bytes).unwrap(), doc);
    writeln!(w, "\n## document (edXML header, the sealed plaintext)").unwrap();
    writeln!(
        w,
        "# example_document(G22, [H41, H44], \"Về việc thử nghiệm liên thông văn bản\")"
    )
    .unwrap();
    hex_block(w, "bytes", &doc_bytes);

    cbor_section(w);
    transition_section(w);
    o
}

#[test]
fn golden_core_vectors() {
    let path = vectors_path();
    let got = golden();
    if std::env::var_os("LIENTHONG_UPDATE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "golden vectors differ from {} at line {}:\n  got:  {:?}\n  want: {:?}\n\
             A wire format, signature input or key format changed. If that is intended, \
             rerun with LIENTHONG_UPDATE_VECTORS=1 and review the diff.",
            path.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

/// The committed bytes (not regenerated ones) still decode, verify and hash to their ids.
#[test]
fn committed_envelopes_decode_and_verify() {
    let text = std::fs::read_to_string(vectors_path()).unwrap();
    for (name, sender) in [
        ("document", "000.00.00.G22"),
        ("status", "000.00.00.H41"),
        ("update", "000.00.00.G22"),
        ("roster", "000.00.00.G01"),
    ] {
        let section = format!("## envelope {name}");
        let bytes = read_hex_block(&text, &section, "bytes");
        let env = SignedEnvelope::decode(&bytes).unwrap();
        env.verify(&signing(seeds_of(sender).0).verifying_key())
            .unwrap();
        assert_eq!(env.body().from, id(sender));
        let cid = ContentId::parse(read_field(&text, &section, "id")).unwrap();
        assert_eq!(env.id(), cid);
        assert_eq!(ContentId::of(&env.header_bytes()), cid);
        assert_eq!(
            hex(&env.signature().0),
            read_field(&text, &section, "signature")
        );
        if let Payload::Roster(inner) = &env.body().payload {
            let signed = SignedRoster::decode(inner).unwrap();
            RosterBook::genesis(signed).unwrap();
        }
    }
    let signed = read_hex_block(&text, "## signed roster", "signed-bytes");
    let signed = SignedRoster::decode(&signed).unwrap();
    assert_eq!(signed.sigs.len(), 2);
    let book = RosterBook::genesis(signed).unwrap();
    assert_eq!(book.current().federation.threshold, 2);

    let doc = read_hex_block(
        &text,
        "## document (edXML header, the sealed plaintext)",
        "bytes",
    );
    Document::from_bytes(&doc).unwrap();

    // Every committed CBOR vector passes the canonical check.
    for line in text.lines().filter(|l| l.starts_with("cbor ")) {
        let (_, hex_part) = line.rsplit_once(" = ").unwrap();
        cbor::check_canonical(&unhex(hex_part), usize::MAX)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

/// The committed key files parse to the committed public keys.
#[test]
fn committed_key_files_parse() {
    let text = std::fs::read_to_string(vectors_path()).unwrap();
    let files: Vec<&str> = text
        .split("-----BEGIN KEY FILE-----\n")
        .skip(1)
        .map(|s| s.split("-----END KEY FILE-----").next().unwrap())
        .collect();
    assert_eq!(files.len(), 2);
    let section = "### key 000.00.00.G22 (seeds 1, 2)";
    let sk = KeyFile::parse(files[0]).unwrap().signing_key().unwrap();
    assert_eq!(
        hex(&sk.verifying_key().0),
        read_field(&text, section, "signing-public")
    );
    let ek = KeyFile::parse(files[1])
        .unwrap()
        .encryption_secret()
        .unwrap();
    assert_eq!(
        hex(&ek.public_key().0),
        read_field(&text, section, "encryption-public")
    );
}
