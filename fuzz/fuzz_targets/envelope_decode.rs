//! `SignedEnvelope::decode` on arbitrary bytes: never panics, and a decoded envelope
//! re-encodes to exactly the bytes it came from (body, signature, content id).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong_protocol::cbor;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::SignedEnvelope;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = SignedEnvelope::decode(data) else {
        return;
    };
    assert_eq!(env.bytes(), data);
    let body = cbor::to_canonical(env.body()).expect("a decoded body re-encodes");
    assert_eq!(body, env.signed_body(), "body re-encodes differently");
    // The wire form: [body, bstr(64) signature].
    let mut again = Vec::with_capacity(data.len());
    again.push(0x82);
    again.extend_from_slice(&body);
    again.extend_from_slice(&[0x58, 0x40]);
    again.extend_from_slice(&env.signature().0);
    assert_eq!(again, data, "envelope re-encodes differently");
    assert_eq!(env.id(), ContentId::of(data));
    assert_eq!(ContentId::parse(&env.id().to_string()).ok(), Some(env.id()));
});
