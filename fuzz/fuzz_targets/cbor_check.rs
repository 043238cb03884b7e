//! `cbor::check_canonical` on arbitrary bytes: never panics, and whatever it accepts
//! ciborium can decode, and re-encoding that value gives back the same bytes (the scanner
//! and the codec agree on what deterministic CBOR is).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::cbor;

fuzz_target!(|data: &[u8]| {
    if cbor::check_canonical(data, usize::MAX).is_err() {
        return;
    }
    let value: ciborium::Value = match cbor::from_canonical(data, usize::MAX) {
        Ok(v) => v,
        Err(e) => panic!("check_canonical accepted bytes from_canonical refuses: {e}"),
    };
    let again = cbor::to_canonical(&value).expect("a decoded value re-encodes");
    assert_eq!(again, data, "re-encoding changed accepted bytes");
});
