//! RFC 6962/9162 proofs: `decode_proof` on arbitrary bytes, then inclusion and consistency
//! verification with arbitrary (possibly huge) sizes never panics; against a real tree of up
//! to 300 leaves, a proof that verifies is exactly the proof the tree produces.
//!
//! Input: `x: u64 LE || y: u64 LE || mode: u8 || proof bytes` (mode bit 0: consistency).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::rfc6962::{self, MemoryTree};

const LEAVES: u64 = 300;

fn tree() -> &'static MemoryTree {
    static TREE: OnceLock<MemoryTree> = OnceLock::new();
    TREE.get_or_init(|| MemoryTree::from_entries((0..LEAVES).map(|i| i.to_be_bytes())))
}

fuzz_target!(|data: &[u8]| {
    let Some((head, bytes)) = data.split_first_chunk::<17>() else {
        return;
    };
    let (x, rest) = head.split_at(8);
    let (y, mode) = rest.split_at(8);
    let x = u64::from_le_bytes(x.try_into().expect("8 bytes"));
    let y = u64::from_le_bytes(y.try_into().expect("8 bytes"));
    let consistency = mode.first().is_some_and(|m| m & 1 == 1);
    let Ok(proof) = rfc6962::decode_proof(bytes) else {
        return;
    };
    assert_eq!(rfc6962::encode_proof(&proof), bytes);

    // Arbitrary parameters: errors, never panics.
    let h = proof.first().copied().unwrap_or(rfc6962::EMPTY_ROOT);
    let _ = rfc6962::verify_inclusion(x, y, &h, &proof, &h);
    let _ = rfc6962::root_from_inclusion_proof(x, y, &h, &proof);
    let _ = rfc6962::verify_consistency(x, y, &h, &h, &proof);
    let _ = rfc6962::verify_consistency(y, x, &h, &h, &proof);

    // A real tree: only the genuine proof verifies.
    let tree = tree();
    let size = y % (LEAVES + 1);
    let root = tree.root_at(size).expect("root of a prefix");
    if consistency {
        let old = x % (size + 1);
        let old_root = tree.root_at(old).expect("root of a prefix");
        if rfc6962::verify_consistency(old, size, &old_root, &root, &proof).is_ok() {
            let genuine = rfc6962::consistency_proof(tree, old, size).expect("proof");
            assert_eq!(proof, genuine, "a forged consistency proof verified");
        }
    } else if size > 0 {
        let index = x % size;
        let leaf = tree.leaf(index).expect("leaf");
        if rfc6962::verify_inclusion(index, size, &leaf, &proof, &root).is_ok() {
            let genuine = rfc6962::inclusion_proof(tree, index, size).expect("proof");
            assert_eq!(proof, genuine, "a forged inclusion proof verified");
        }
    }
});
