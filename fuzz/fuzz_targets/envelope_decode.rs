//! `SignedEnvelope::decode` and `decode_header` on arbitrary bytes: never panic, and a
//! decoded envelope re-encodes to exactly the bytes it came from (body, signature, inline
//! payload), its header decodes on its own to the same envelope, and the content id is
//! the SHA-256 of that header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::cbor;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{Payload, SignedEnvelope};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = SignedEnvelope::decode_header(data) {
        assert_eq!(env.header_bytes(), data, "header re-encodes differently");
        assert_eq!(env.id(), ContentId::of(data));
    }
    let Ok(env) = SignedEnvelope::decode(data) else {
        return;
    };
    assert_eq!(env.bytes(), data);
    let body = cbor::to_canonical(env.body()).expect("a decoded body re-encodes");
    assert_eq!(body, env.signed_body(), "body re-encodes differently");

    // The wire form: [body, bstr(64) signature] or [body, signature, bstr(inline payload)].
    let inline = env.inline();
    let mut again = vec![if inline.is_some() { 0x83 } else { 0x82 }];
    again.extend_from_slice(&body);
    again.extend_from_slice(&[0x58, 0x40]);
    again.extend_from_slice(&env.signature().0);
    match (&env.body().payload, inline) {
        (Payload::Inline { .. }, Some(inline)) => {
            let blob = inline.to_bytes().expect("an inline payload re-encodes");
            assert_eq!(Some(blob.as_slice()), env.inline_bytes());
            let item = cbor::to_canonical(&ciborium::Value::Bytes(blob)).expect("bytes encode");
            again.extend_from_slice(&item);
        }
        (Payload::Inline { .. }, None) => panic!("decoded an inline envelope without its payload"),
        (_, Some(_)) => panic!("an inline payload beside a body that commits to none"),
        (_, None) => {}
    }
    assert_eq!(again, data, "envelope re-encodes differently");

    let header = env.header_bytes();
    assert_eq!(env.id(), ContentId::of(&header));
    let alone = SignedEnvelope::decode_header(&header).expect("the header decodes alone");
    assert_eq!((alone.body(), alone.id()), (env.body(), env.id()));
    assert_eq!(ContentId::parse(&env.id().to_string()).ok(), Some(env.id()));
});
