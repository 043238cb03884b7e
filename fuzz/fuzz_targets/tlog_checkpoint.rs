//! C2SP tlog-checkpoint: `Checkpoint::parse` (note text) and `SignedCheckpoint::parse`
//! (whole signed note) on arbitrary bytes never panic, what parses re-encodes to the same
//! bytes, and opening with a log key never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::signed_note::Ed25519Verifier;
use lienthong_protocol::tlog_checkpoint::{Checkpoint, SignedCheckpoint};
use lienthong_protocol::tlog_cosignature;

fn log_key() -> &'static Ed25519Verifier {
    static KEY: OnceLock<Ed25519Verifier> = OnceLock::new();
    KEY.get_or_init(lienthong_fuzz::log_verifier)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Checkpoint::parse(data) {
        assert_eq!(
            c.to_text().as_bytes(),
            data,
            "checkpoint re-encodes differently"
        );
    }
    if let Ok(signed) = SignedCheckpoint::parse(data) {
        assert_eq!(
            signed.to_bytes(),
            data,
            "signed checkpoint re-encodes differently"
        );
        assert_eq!(signed.checkpoint().to_text(), signed.note().text());
        let _ = signed.verify(&[log_key()]);
    }
    let _ = SignedCheckpoint::open(data, log_key());
    if let Ok(note) = lienthong_protocol::signed_note::Note::parse(data) {
        let witness = [lienthong_fuzz::witness_key()];
        let _ = tlog_cosignature::verify_quorum(&note, &witness, 1);
    }
});
