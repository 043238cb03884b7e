//! C2SP tlog-tiles: `TileId::parse_path` on arbitrary UTF-8 accepts only canonical paths
//! (what parses prints back identically), and `parse_entry_bundle` on arbitrary bytes
//! never panics and round-trips through `encode_entry_bundle`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::tlog_tiles::{self, TileId};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(tile) = TileId::parse_path(s)
    {
        assert_eq!(tile.path(), s, "tile path is not canonical");
    }
    if let Ok(entries) = tlog_tiles::parse_entry_bundle(data) {
        let again = tlog_tiles::encode_entry_bundle(&entries).expect("entries re-encode");
        assert_eq!(again, data, "entry bundle re-encodes differently");
    }
});
