//! `SignedRoster::decode` then `.roster()` on arbitrary bytes: never panics, and what
//! decodes re-encodes to the same bytes. The input is also tried as the inner roster
//! bytes directly, so the roster decoder and validator get fuzzed without the fuzzer first
//! having to find a valid outer wrapper.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::roster::SignedRoster;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedRoster::decode(data) {
        let again = signed
            .to_bytes()
            .expect("a decoded signed roster re-encodes");
        assert_eq!(again, data, "signed roster re-encodes differently");
        check_inner(&signed);
    }
    check_inner(&SignedRoster {
        roster: data.to_vec(),
        sigs: Vec::new(),
    });
});

fn check_inner(signed: &SignedRoster) {
    if let Ok(roster) = signed.roster() {
        let again = roster.to_bytes().expect("a decoded roster re-encodes");
        assert_eq!(again, signed.roster, "roster re-encodes differently");
        let _ = roster.allowed_peers();
        for a in &roster.agencies {
            assert_eq!(roster.agency(&a.id), Some(a));
        }
    }
}
