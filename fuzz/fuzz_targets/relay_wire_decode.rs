//! Relay request-response messages: `relay::wire::Wire::decode` on arbitrary bytes never
//! panics, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::relay::wire::Wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Wire::decode(data) {
        let again = msg.to_bytes().expect("a decoded message re-encodes");
        assert_eq!(again, data, "relay message re-encodes differently");
    }
});
