//! edXML import (QCVN 102:2016): `edxml::from_edxml` on arbitrary bytes never panics, and
//! whatever it accepts exports and reads back to the same value (a status to the second,
//! since edXML timestamps carry whole seconds).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::edxml::{self, EdxmlMessage};

fuzz_target!(|data: &[u8]| {
    match edxml::from_edxml(data) {
        Ok(EdxmlMessage::Document(doc)) => {
            let xml = edxml::document_to_edxml(&doc).expect("an imported document exports");
            let again = edxml::document_from_edxml(&xml).expect("an export reads back");
            assert_eq!(again, *doc, "document changed through export");
        }
        Ok(EdxmlMessage::Status(status)) => {
            let xml = edxml::status_to_edxml(&status).expect("an imported status exports");
            let again = edxml::status_from_edxml(&xml).expect("an export reads back");
            let mut expected = *status;
            expected.timestamp_ms -= expected.timestamp_ms % 1000;
            assert_eq!(again, expected, "status changed through export");
        }
        Err(e) => {
            let _ = (e.to_string(), e.path());
        }
    }
});
