//! C2SP signed-note: `Note::parse` on arbitrary bytes never panics, what parses re-encodes
//! to the same bytes, and verification against known keys (an Ed25519 note key and a
//! cosignature/v1 witness key) never panics. The input is also tried as a verifier key
//! string (`Vkey`, note verifier, cosigner key).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::signed_note::{Ed25519Verifier, Note, NoteVerifier, Vkey};
use lienthong_protocol::tlog_cosignature::{self, CosignerKey};

fn keys() -> &'static (Ed25519Verifier, CosignerKey) {
    static KEYS: OnceLock<(Ed25519Verifier, CosignerKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            lienthong_fuzz::log_verifier(),
            lienthong_fuzz::witness_key(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = Note::parse(data) {
        assert_eq!(note.to_bytes(), data, "note re-encodes differently");
        let (log, witness) = keys();
        let verifiers: [&dyn NoteVerifier; 2] = [log, witness];
        let _ = note.verify(&verifiers);
        let _ = tlog_cosignature::verify_quorum(&note, std::slice::from_ref(witness), 1);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Vkey::parse(s);
        let _ = Ed25519Verifier::from_vkey(s);
        let _ = CosignerKey::from_vkey(s);
    }
});
