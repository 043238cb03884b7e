//! Sealed-payload manifests: `seal::Manifest::decode` on arbitrary bytes never panics, a
//! decoded manifest keeps the exact bytes, its chunk lengths add up to the total length,
//! and checking a chunk against it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::seal::{self, Manifest, TAG_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Manifest::decode(data) else {
        return;
    };
    assert_eq!(m.as_bytes(), data);
    let mut plain = 0u64;
    for i in 0..m.chunks().len() {
        let p = m
            .chunk_plaintext_len(i)
            .expect("a listed chunk has a length");
        assert_eq!(m.chunk_ciphertext_len(i), Some(p + TAG_LEN));
        plain += p as u64;
    }
    assert_eq!(m.chunk_plaintext_len(m.chunks().len()), None);
    assert_eq!(plain, m.total_len(), "chunk lengths do not add up");
    assert_eq!(m.chunks().len() as u64, seal::chunk_count(m.total_len()));
    for r in m.recipients() {
        assert!(m.wrap_for(r).is_some());
    }
    let _ = seal::verify_chunk(&m, 0, data);
    let _ = seal::verify_chunk(&m, m.chunks().len(), &[]);
});
