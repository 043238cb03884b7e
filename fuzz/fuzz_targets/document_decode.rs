//! The edXML-aligned document (an opened payload): `Document::from_bytes` on arbitrary
//! bytes never panics, and what decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::document::Document;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = Document::from_bytes(data) {
        let again = doc.to_bytes().expect("a decoded document re-encodes");
        assert_eq!(again, data, "document re-encodes differently");
    }
});
