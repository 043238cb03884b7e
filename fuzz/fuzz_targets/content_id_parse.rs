//! `ContentId::parse` on arbitrary UTF-8: never panics, and accepts only the one canonical
//! spelling (what it parses prints back identically).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::content_id::ContentId;

fuzz_target!(|s: &str| {
    if let Ok(id) = ContentId::parse(s) {
        assert_eq!(id.to_string(), s);
    }
});
