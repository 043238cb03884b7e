//! Audit ledger entries: `ledger::LedgerEntry::decode` on arbitrary bytes never panics,
//! what decodes re-encodes to the same bytes, and an envelope entry's key is its content id
//! (the SHA-256 of the entry).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::ledger::LedgerEntry;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = LedgerEntry::decode(data) else {
        return;
    };
    assert_eq!(
        entry.to_bytes(),
        data,
        "ledger entry re-encodes differently"
    );
    if let LedgerEntry::Envelope(env) = &entry {
        assert_eq!(entry.key(), ContentId::of(data));
        assert_eq!(env.id(), entry.key());
    }
});
