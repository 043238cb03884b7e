//! The API's decoding of a 1 KiB document send (`POST /v1/documents` JSON, one base64
//! attachment) without HTTP: `api::extract::parse_json` (plain serde_json), against the
//! path-tracking parse it falls back to for a refused body, then validation into a
//! `Document` and its canonical bytes.
//!
//! `cargo bench -p lienthong-node --bench api_decode`

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use lienthong_node::api::dto::SendRequest;
use lienthong_node::api::extract::{parse_json, parse_json_naming_the_field};

fn body_1k() -> String {
    let data = vec![7u8; 1024];
    serde_json::json!({
        "header": {
            "from": {"organ_id": "000.00.00.G22", "organ_name": "Agency A"},
            "to": [{"organ_id": "000.00.00.H41", "organ_name": "Agency B"}],
            "document_id": "000.00.00.G22,bench-1-2",
            "code": { "number": "12", "notation": "QĐ-UBND" },
            "promulgation": { "place": "Hà Nội", "date": "2026-11-24" },
            "document_type": "1",
            "subject": "Văn bản đo hiệu năng",
            "signer": { "competence": "TM.", "position": "Chủ tịch", "full_name": "Nguyễn Văn A" }
        },
        "attachments": [{"name": "phu-luc.pdf", "content_type": "application/pdf",
            "data": base64::engine::general_purpose::STANDARD.encode(&data)}]
    })
    .to_string()
}

fn bench(c: &mut Criterion) {
    let body = body_1k();
    let bytes = body.as_bytes();
    let mut g = c.benchmark_group("api_decode_1KiB");
    // What a refused body's second parse costs, against what every body costs.
    g.bench_function("json_path_tracked", |b| {
        b.iter(|| parse_json_naming_the_field::<SendRequest>(black_box(bytes)).unwrap());
    });
    g.bench_function("json_plain", |b| {
        b.iter(|| parse_json::<SendRequest>(black_box(bytes)).unwrap());
    });
    g.bench_function("parse_json_validate_canonical_bytes", |b| {
        b.iter(|| {
            let request: SendRequest = parse_json(black_box(bytes)).unwrap();
            request.into_document().unwrap().to_bytes().unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
