//! Transparency-log tests across modules: upstream RFC 6962 vectors, committed golden
//! vectors (regenerate with `LIENTHONG_UPDATE_VECTORS=1`), and property tests of proofs and
//! of the parsers on arbitrary input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use ed25519_dalek::SigningKey;
use lienthong_protocol::rfc6962::{
    self, EMPTY_ROOT, Hash, MemoryTree, TreeBuilder, consistency_proof, decode_proof,
    inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
};
use lienthong_protocol::signed_note::{Ed25519Signer, Ed25519Verifier, Note, NoteVerifier, Vkey};
use lienthong_protocol::tlog_checkpoint::{Checkpoint, SignedCheckpoint};
use lienthong_protocol::tlog_cosignature::{Cosigner, CosignerKey, verify_quorum};
use lienthong_protocol::tlog_tiles::{
    TileId, encode_entry_bundle, new_tiles, parse_entry_bundle, tiles_for_inclusion_proof,
};
use proptest::prelude::*;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hash(s: &str) -> Hash {
    unhex(s).try_into().unwrap()
}

fn hashes(s: &str) -> Vec<Hash> {
    if s == "-" {
        return Vec::new();
    }
    s.split(',').map(hash).collect()
}

fn hex_list(p: &[Hash]) -> String {
    if p.is_empty() {
        return "-".into();
    }
    p.iter().map(|h| hex(h)).collect::<Vec<_>>().join(",")
}

/// Go-style corruption probes: every one must fail to verify.
fn assert_inclusion_probes_fail(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) {
    let some = [0xab; 32];
    let mut probes: Vec<(u64, u64, Hash, Vec<Hash>, Hash, String)> = vec![
        (
            index.wrapping_sub(1),
            size,
            *leaf,
            proof.to_vec(),
            *root,
            "index-1".into(),
        ),
        (
            index + 1,
            size,
            *leaf,
            proof.to_vec(),
            *root,
            "index+1".into(),
        ),
        (
            index ^ 2,
            size,
            *leaf,
            proof.to_vec(),
            *root,
            "index^2".into(),
        ),
        (
            index,
            size * 2,
            *leaf,
            proof.to_vec(),
            *root,
            "size*2".into(),
        ),
        (
            index,
            size / 2,
            *leaf,
            proof.to_vec(),
            *root,
            "size/2".into(),
        ),
        (
            index,
            size,
            some,
            proof.to_vec(),
            *root,
            "wrong leaf".into(),
        ),
        (
            index,
            size,
            *leaf,
            proof.to_vec(),
            EMPTY_ROOT,
            "empty root".into(),
        ),
        (
            index,
            size,
            *leaf,
            proof.to_vec(),
            some,
            "random root".into(),
        ),
        (
            index,
            size,
            *leaf,
            [proof, &[*root]].concat(),
            *root,
            "trailing root".into(),
        ),
        (
            index,
            size,
            *leaf,
            [&[*root], proof].concat(),
            *root,
            "preceding root".into(),
        ),
    ];
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][0] ^= 8;
        probes.push((
            index,
            size,
            *leaf,
            p,
            *root,
            format!("bit flip in proof[{i}]"),
        ));
    }
    if !proof.is_empty() {
        let p = proof[..proof.len() - 1].to_vec();
        probes.push((index, size, *leaf, p, *root, "removed component".into()));
    }
    for (i, s, l, p, r, what) in probes {
        assert!(
            verify_inclusion(i, s, &l, &p, &r).is_err(),
            "{what} verified (index {index}, size {size})"
        );
    }
}

fn assert_consistency_probes_fail(m: u64, n: u64, r1: &Hash, r2: &Hash, proof: &[Hash]) {
    let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>, String)> = vec![
        (m - 1, n, *r1, *r2, proof.to_vec(), "size1-1".into()),
        (m + 1, n, *r1, *r2, proof.to_vec(), "size1+1".into()),
        (m ^ 2, n, *r1, *r2, proof.to_vec(), "size1^2".into()),
        (m, n * 2, *r1, *r2, proof.to_vec(), "size2*2".into()),
        (m, n / 2, *r1, *r2, proof.to_vec(), "size2/2".into()),
        (m, n, [1; 32], *r2, proof.to_vec(), "wrong root1".into()),
        (m, n, *r1, [1; 32], proof.to_vec(), "wrong root2".into()),
        (m, n, *r2, *r1, proof.to_vec(), "swapped roots".into()),
        (m, n, *r1, *r2, Vec::new(), "empty proof".into()),
        (
            m,
            n,
            *r1,
            *r2,
            [proof, &[*r1]].concat(),
            "trailing root1".into(),
        ),
        (
            m,
            n,
            *r1,
            *r2,
            [&[*r2], proof].concat(),
            "preceding root2".into(),
        ),
    ];
    for i in 0..proof.len() {
        let mut p = proof.to_vec();
        p[i][0] ^= 16;
        probes.push((m, n, *r1, *r2, p, format!("bit flip in proof[{i}]")));
    }
    if !proof.is_empty() {
        let p = proof[..proof.len() - 1].to_vec();
        probes.push((m, n, *r1, *r2, p, "truncated".into()));
    }
    for (a, b, x, y, p, what) in probes {
        assert!(
            verify_consistency(a, b, &x, &y, &p).is_err(),
            "{what} verified ({m} -> {n})"
        );
    }
}

#[test]
fn rfc6962_upstream_vectors() {
    let text = std::fs::read_to_string(vectors_dir().join("rfc6962.txt")).unwrap();
    let mut tree = MemoryTree::new();
    let mut builder = TreeBuilder::new();
    let mut roots = std::collections::BTreeMap::new();
    let mut checked = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split(' ').collect();
        match f[0] {
            "empty_root" => assert_eq!(hash(f[1]), EMPTY_ROOT),
            "leaf" => {
                let data = unhex(f[1]);
                tree.push_entry(&data);
                builder.push_entry(&data);
            }
            "root" => {
                let size: u64 = f[1].parse().unwrap();
                let want = hash(f[2]);
                assert_eq!(tree.root_at(size).unwrap(), want, "root {size}");
                roots.insert(size, want);
            }
            "inclusion" => {
                let (index, size): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
                let want = hashes(f[3]);
                assert_eq!(tree.inclusion_proof(index, size).unwrap(), want);
                let leaf = tree.leaf(index).unwrap();
                let root = roots[&size];
                verify_inclusion(index, size, &leaf, &want, &root).unwrap();
                assert_inclusion_probes_fail(index, size, &leaf, &want, &root);
                checked += 1;
            }
            "consistency" => {
                let (m, n): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
                let want = hashes(f[3]);
                assert_eq!(tree.consistency_proof(m, n).unwrap(), want);
                verify_consistency(m, n, &roots[&m], &roots[&n], &want).unwrap();
                if !want.is_empty() {
                    assert_consistency_probes_fail(m, n, &roots[&m], &roots[&n], &want);
                }
                checked += 1;
            }
            other => panic!("unknown vector line kind {other}"),
        }
    }
    assert_eq!(builder.root(), roots[&8]);
    assert_eq!(checked, 10);
}

#[test]
fn consistency_edge_cases() {
    let (r1, r2) = ([1u8; 32], [2u8; 32]);
    assert!(verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]).is_ok());
    assert!(verify_consistency(0, 5, &EMPTY_ROOT, &r2, &[]).is_ok());
    assert!(verify_consistency(0, 5, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 1, &r2, &r2, &[]).is_ok());
    assert!(verify_consistency(1, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(2, 1, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 2, &r1, &r2, &[]).is_err());
    assert!(verify_consistency(1, 1, &r1, &r1, &[EMPTY_ROOT]).is_err());
    assert!(verify_inclusion(0, 0, &r1, &[], &r1).is_err());
    assert!(verify_inclusion(0, 1, &r1, &[], &r1).is_ok());
    assert!(verify_inclusion(1, 1, &r1, &[], &r1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Golden vectors.

fn entry(i: u64) -> Vec<u8> {
    format!("lienthong entry {i}").into_bytes()
}

fn log_signer() -> Ed25519Signer {
    Ed25519Signer::new(
        "lienthong.example/ledger/central-1",
        SigningKey::from_bytes(&[0x11; 32]),
    )
    .unwrap()
}

fn witnesses() -> Vec<Cosigner> {
    (0..3u8)
        .map(|i| {
            Cosigner::new(
                &format!("lienthong.example/witness/central-{}", i + 2),
                SigningKey::from_bytes(&[0x21 + i; 32]),
            )
            .unwrap()
        })
        .collect()
}

fn golden() -> String {
    let mut o = String::new();
    let w = &mut o;
    writeln!(
        w,
        "# Golden vectors for lienthong-protocol's transparency-log modules."
    )
    .unwrap();
    writeln!(
        w,
        "# Generated by protocol/tests/tlog.rs (golden_vectors); rewrite with"
    )
    .unwrap();
    writeln!(
        w,
        "# LIENTHONG_UPDATE_VECTORS=1. Entry i is the ASCII text \"lienthong entry <i>\"."
    )
    .unwrap();
    writeln!(
        w,
        "# Keys are Ed25519 from fixed seeds: log 0x11 x32, witnesses 0x21.., x32."
    )
    .unwrap();
    let tree = MemoryTree::from_entries((0..1100).map(entry));
    writeln!(
        w,
        "\n## rfc6962: leaf <index> <leaf hash>, root <size> <hash>"
    )
    .unwrap();
    for i in [0u64, 1, 1099] {
        writeln!(w, "leaf {i} {}", hex(&tree.leaf(i).unwrap())).unwrap();
    }
    for size in [0u64, 1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 1000, 1100] {
        writeln!(w, "root {size} {}", hex(&tree.root_at(size).unwrap())).unwrap();
    }
    writeln!(w, "\n## inclusion <index> <size> <proof>").unwrap();
    for (i, n) in [
        (0u64, 1u64),
        (0, 8),
        (5, 8),
        (255, 256),
        (256, 257),
        (999, 1000),
        (513, 1100),
    ] {
        writeln!(
            w,
            "inclusion {i} {n} {}",
            hex_list(&tree.inclusion_proof(i, n).unwrap())
        )
        .unwrap();
    }
    writeln!(w, "\n## consistency <old size> <new size> <proof>").unwrap();
    for (m, n) in [
        (1u64, 2u64),
        (3, 7),
        (4, 8),
        (6, 8),
        (255, 257),
        (256, 1000),
        (1000, 1100),
    ] {
        writeln!(
            w,
            "consistency {m} {n} {}",
            hex_list(&tree.consistency_proof(m, n).unwrap())
        )
        .unwrap();
    }
    let mut b = TreeBuilder::new();
    for i in 0..1100 {
        b.push_entry(&entry(i));
    }
    writeln!(
        w,
        "\n## TreeBuilder frontier at 1100 (largest subtree first)"
    )
    .unwrap();
    writeln!(w, "frontier 1100 {}", hex_list(&b.frontier())).unwrap();

    let log = log_signer();
    let ws = witnesses();
    writeln!(w, "\n## signed_note / tlog_cosignature verifier keys").unwrap();
    writeln!(w, "log-vkey {}", log.verifier().to_vkey()).unwrap();
    for c in &ws {
        writeln!(w, "witness-vkey {}", c.public().to_vkey()).unwrap();
    }
    let cp = Checkpoint::new("lienthong.example/ledger/central-1", 1100, tree.root()).unwrap();
    let mut signed = cp.sign(&log).unwrap();
    for (i, c) in ws.iter().enumerate() {
        let line = c.cosign(&cp, 1_750_000_000 + i as u64).unwrap();
        signed.note_mut().add_signature(line).unwrap();
    }
    writeln!(
        w,
        "\n## tlog_checkpoint: size 1100, signed by the log, cosigned by 3 witnesses"
    )
    .unwrap();
    writeln!(w, "## at times 1750000000, 1750000001, 1750000002").unwrap();
    writeln!(w, "-----BEGIN NOTE-----").unwrap();
    w.push_str(&String::from_utf8(signed.to_bytes()).unwrap());
    writeln!(w, "-----END NOTE-----").unwrap();

    writeln!(
        w,
        "\n## tlog_tiles: tiles of a 1100-leaf tree, then entry bundles"
    )
    .unwrap();
    for t in new_tiles(0, 1100, false)
        .iter()
        .chain(new_tiles(0, 1100, true).iter())
    {
        writeln!(w, "tile {}", t.path()).unwrap();
    }
    let need: Vec<String> = tiles_for_inclusion_proof(513, 1100)
        .unwrap()
        .iter()
        .map(TileId::path)
        .collect();
    writeln!(w, "tiles-for-inclusion 513 1100 {}", need.join(",")).unwrap();
    let bundle = encode_entry_bundle(&(0..3).map(entry).collect::<Vec<_>>()).unwrap();
    writeln!(w, "entry-bundle 0..3 {}", hex(&bundle)).unwrap();
    o
}

#[test]
fn golden_vectors() {
    let path = vectors_dir().join("tlog_golden.txt");
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
             If the format change is intended, rerun with LIENTHONG_UPDATE_VECTORS=1.",
            path.display(),
            first + 1,
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
}

#[test]
fn golden_note_verifies() {
    let text = std::fs::read_to_string(vectors_dir().join("tlog_golden.txt")).unwrap();
    let begin = text.find("-----BEGIN NOTE-----\n").unwrap() + "-----BEGIN NOTE-----\n".len();
    let end = text.find("-----END NOTE-----").unwrap();
    let note = &text.as_bytes()[begin..end];
    let vkey = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    };
    let log = Ed25519Verifier::from_vkey(&vkey("log-vkey ")[0]).unwrap();
    let keys: Vec<CosignerKey> = vkey("witness-vkey ")
        .iter()
        .map(|k| CosignerKey::from_vkey(k).unwrap())
        .collect();
    let signed = SignedCheckpoint::open(note, &log).unwrap();
    assert_eq!(signed.checkpoint().size(), 1100);
    let tree = MemoryTree::from_entries((0..1100).map(entry));
    assert_eq!(signed.checkpoint().root(), &tree.root());
    let q = verify_quorum(signed.note(), &keys, 3).unwrap();
    assert_eq!(
        q.cosigned_by,
        vec![(0, 1_750_000_000), (1, 1_750_000_001), (2, 1_750_000_002)]
    );
    assert!(verify_quorum(signed.note(), &keys[..2], 3).is_err());
}

// ---------------------------------------------------------------------------------------------
// Property tests.

const MAX_SIZE: u64 = 2000;

fn big_tree() -> &'static MemoryTree {
    static TREE: OnceLock<MemoryTree> = OnceLock::new();
    TREE.get_or_init(|| MemoryTree::from_entries((0..MAX_SIZE).map(|i| i.to_be_bytes())))
}

fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX_SIZE).prop_flat_map(|n| (Just(n), 0..n))
}

fn two_sizes() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX_SIZE).prop_flat_map(|n| (0..=n, Just(n)))
}

#[derive(Debug, Clone)]
enum Tamper {
    FlipBit { hash: usize, bit: u8 },
    Truncate,
    Extend,
    Index(u64),
    Size(u64),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(hash, bit)| Tamper::FlipBit { hash, bit }),
        Just(Tamper::Truncate),
        Just(Tamper::Extend),
        (0..MAX_SIZE).prop_map(Tamper::Index),
        (1..=MAX_SIZE).prop_map(Tamper::Size),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn inclusion_proofs_verify_and_tampering_fails((size, index) in size_and_index(), t in tamper()) {
        let tree = big_tree();
        let root = tree.root_at(size).unwrap();
        let leaf = tree.leaf(index).unwrap();
        let proof = inclusion_proof(tree, index, size).unwrap();
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());
        // A streaming builder reaches the same root.
        let mut b = TreeBuilder::new();
        for i in 0..size { b.push_leaf_hash(tree.leaf(i).unwrap()); }
        prop_assert_eq!(b.root(), root);

        let (mut i2, mut n2, mut p2) = (index, size, proof.clone());
        match t {
            Tamper::FlipBit { hash, bit } => {
                if p2.is_empty() { return Ok(()); }
                let k = hash % p2.len();
                p2[k][usize::from(bit) % 32] ^= 1 << (bit % 8);
            }
            Tamper::Truncate => { if p2.pop().is_none() { return Ok(()); } }
            Tamper::Extend => p2.push(root),
            Tamper::Index(j) => { if j == index { return Ok(()); } i2 = j; }
            Tamper::Size(m) => {
                // A proof is for one tree head: checked against another size's root it fails.
                if m == size { return Ok(()); }
                n2 = m;
                let r2 = tree.root_at(m).unwrap();
                prop_assert!(verify_inclusion(i2, n2, &leaf, &p2, &r2).is_err());
                return Ok(());
            }
        }
        prop_assert!(verify_inclusion(i2, n2, &leaf, &p2, &root).is_err());
    }

    #[test]
    fn consistency_proofs_verify_and_tampering_fails((old, new) in two_sizes(), t in tamper()) {
        let tree = big_tree();
        let (r1, r2) = (tree.root_at(old).unwrap(), tree.root_at(new).unwrap());
        let proof = consistency_proof(tree, old, new).unwrap();
        prop_assert!(verify_consistency(old, new, &r1, &r2, &proof).is_ok());
        let bytes = rfc6962::encode_proof(&proof);
        prop_assert_eq!(decode_proof(&bytes).unwrap(), proof.clone());

        let (mut m, mut p2) = (old, proof.clone());
        match t {
            Tamper::FlipBit { hash, bit } => {
                if p2.is_empty() { return Ok(()); }
                let k = hash % p2.len();
                p2[k][usize::from(bit) % 32] ^= 1 << (bit % 8);
            }
            Tamper::Truncate => { if p2.pop().is_none() { return Ok(()); } }
            Tamper::Extend => p2.push(r1),
            Tamper::Index(j) | Tamper::Size(j) => {
                // Claim a different old size with the same roots.
                if j == old || j > new || r1 == tree.root_at(j).unwrap() { return Ok(()); }
                m = j;
            }
        }
        prop_assert!(verify_consistency(m, new, &r1, &r2, &p2).is_err());
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Note::parse(&bytes);
        let _ = Checkpoint::parse(&bytes);
        let _ = SignedCheckpoint::parse(&bytes);
        let _ = parse_entry_bundle(&bytes);
        let _ = decode_proof(&bytes);
        let s = String::from_utf8_lossy(&bytes);
        let _ = TileId::parse_path(&s);
        let _ = Vkey::parse(&s);
        let _ = Ed25519Verifier::from_vkey(&s);
        let _ = CosignerKey::from_vkey(&s);
        let _ = Ed25519Signer::from_skey(&s);
    }

    #[test]
    fn text_parsers_never_panic(s in "[a-z0-9/.+=\\- \n\u{2014}x]{0,300}") {
        let _ = Note::parse(s.as_bytes());
        let _ = Checkpoint::parse(s.as_bytes());
        let _ = TileId::parse_path(&s);
        let _ = Vkey::parse(&s);
        let tile = format!("tile/{s}");
        if let Ok(t) = TileId::parse_path(&tile) {
            prop_assert_eq!(t.path(), tile);
        }
    }

    #[test]
    fn tile_paths_round_trip(level in 0u8..=63, index in any::<u64>(), width in 1u16..=256, entries in any::<bool>()) {
        let t = if entries { TileId::entries(index, width) } else { TileId::hashes(level, index, width) }.unwrap();
        prop_assert_eq!(TileId::parse_path(&t.path()).unwrap(), t);
    }

    #[test]
    fn mutated_cosigned_checkpoint_never_verifies_as_another(pos in any::<usize>(), byte in any::<u8>()) {
        let (bytes, log, keys) = cosigned_fixture();
        let mut m = bytes.clone();
        let k = pos % m.len();
        if m[k] == byte { return Ok(()); }
        m[k] = byte;
        if let Ok(c) = SignedCheckpoint::parse(&m) {
            let log_ok = c.verify(&[log as &dyn NoteVerifier]).is_ok();
            let quorum_ok = verify_quorum(c.note(), keys, 3).is_ok();
            if log_ok || quorum_ok {
                let orig = SignedCheckpoint::parse(bytes).unwrap();
                prop_assert_eq!(c.checkpoint(), orig.checkpoint());
            }
        }
    }
}

type Fixture = (Vec<u8>, Ed25519Verifier, Vec<CosignerKey>);

fn cosigned_fixture() -> (
    &'static Vec<u8>,
    &'static Ed25519Verifier,
    &'static [CosignerKey],
) {
    static F: OnceLock<Fixture> = OnceLock::new();
    let f = F.get_or_init(|| {
        let log = log_signer();
        let ws = witnesses();
        let cp = Checkpoint::new("lienthong.example/ledger/central-1", 7, [5; 32]).unwrap();
        let mut s = cp.sign(&log).unwrap();
        for c in &ws {
            s.note_mut()
                .add_signature(c.cosign(&cp, 1_750_000_000).unwrap())
                .unwrap();
        }
        (
            s.to_bytes(),
            log.verifier(),
            ws.iter().map(Cosigner::public).collect(),
        )
    });
    (&f.0, &f.1, &f.2)
}

#[test]
fn leaf_hash_of_entry_matches_builder() {
    let mut b = TreeBuilder::new();
    assert_eq!(b.push_entry(b"x"), leaf_hash(b"x"));
}
