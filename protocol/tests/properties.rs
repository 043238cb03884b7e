//! Property tests of the protocol core: envelope round trips over arbitrary valid bodies,
//! tamper detection for every single-bit flip, decoders that never panic on arbitrary or
//! mutated input, deterministic CBOR over arbitrary values, roster thresholds and status
//! transition invariants. Case counts are kept moderate so the file runs in seconds in a
//! debug build; raise them with `PROPTEST_CASES=…` for a longer soak.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use ciborium::Value;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::cbor::{self, MAX_DEPTH};
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::{Document, example_document};
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Kind, MAX_ROUTING_TEXT, Payload, Routing,
    SignedEnvelope,
};
use lienthong_protocol::keys::{EncryptionSecret, KeyFile, SignatureDomain, SigningKey};
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, Federation, RootSignature, Roster, RosterBook, RosterError,
    SignedRoster,
};
use lienthong_protocol::status::{Party, Stage, StatusChain, StatusCode};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        // Shrinking signed data re-signs every step; keep failures quick to report.
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// An edXML agency code at a random level (1 to 4), or now and then an "other form".
fn agency_id() -> impl Strategy<Value = AgencyId> {
    let edxml = (
        select(vec!['A', 'G', 'H', 'B', 'K']),
        0u8..100,
        1u8..=4,
        1u8..100,
        1u8..100,
        1u16..1000,
    )
        .prop_map(|(letter, number, level, l2, l3, l4)| {
            let l2 = if level >= 2 { l2 } else { 0 };
            let l3 = if level >= 3 { l3 } else { 0 };
            let l4 = if level >= 4 { l4 } else { 0 };
            let s = format!("{l4:03}.{l3:02}.{l2:02}.{letter}{number:02}");
            let id = AgencyId::parse(&s).unwrap();
            assert_eq!(id.level(), Some(level));
            id
        });
    prop_oneof![
        9 => edxml,
        1 => "[0-9]{12}".prop_map(|s| AgencyId::parse_any(&s).unwrap()),
    ]
}

fn content_id() -> impl Strategy<Value = ContentId> {
    any::<[u8; 32]>().prop_map(ContentId)
}

fn routing_text() -> impl Strategy<Value = String> {
    // At most 16 characters of at most 4 bytes: always within MAX_ROUTING_TEXT.
    "\\PC{1,16}".prop_filter("fits", |s| s.len() <= MAX_ROUTING_TEXT)
}

fn date() -> impl Strategy<Value = String> {
    (0u32..10_000, 1u32..=12, 1u32..=31).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

fn kind() -> impl Strategy<Value = Kind> {
    select(vec![
        Kind::Document,
        Kind::Status,
        Kind::Revoke,
        Kind::Update,
        Kind::Replace,
        Kind::Roster,
    ])
}

/// An inline payload stands for bytes built by [`sign_env`] from its digest and size.
fn inline_payload() -> impl Strategy<Value = Payload> {
    (any::<[u8; 32]>(), 0u32..1500).prop_map(|(digest, size)| Payload::Inline { digest, size })
}

/// Signs `body`; an `Inline` payload becomes real inline bytes derived from its fields.
fn sign_env(body: EnvelopeBody, key: &SigningKey) -> SignedEnvelope {
    match body.payload {
        Payload::Inline { digest, size } => {
            let inline = InlinePayload {
                manifest: digest.to_vec(),
                chunk: vec![digest[0]; size as usize],
            };
            SignedEnvelope::sign_inline(body, &inline, key).unwrap()
        }
        _ => SignedEnvelope::sign(body, key).unwrap(),
    }
}

fn external_payload() -> impl Strategy<Value = Payload> {
    (any::<[u8; 32]>(), any::<u64>())
        .prop_map(|(manifest, size)| Payload::External { manifest, size })
}

/// Any body that `EnvelopeBody::validate` accepts.
fn valid_body() -> impl Strategy<Value = EnvelopeBody> {
    (
        kind(),
        agency_id(),
        proptest::collection::btree_set(agency_id(), 0..8),
        prop_oneof![Just(1u64), 2u64..1000, any::<u64>().prop_map(|s| s.max(2))],
        content_id(),
        any::<u64>(),
    )
        .prop_flat_map(|(kind, from, to, seq, prev, created_ms)| {
            let payload = match kind {
                Kind::Roster => vec(any::<u8>(), 1..256).prop_map(Payload::Roster).boxed(),
                Kind::Status => prop_oneof![Just(Payload::None), inline_payload()].boxed(),
                _ => prop_oneof![inline_payload(), external_payload()].boxed(),
            };
            let needs_ref = kind != Kind::Document && kind != Kind::Roster;
            let refers_to = if needs_ref {
                content_id().prop_map(Some).boxed()
            } else {
                proptest::option::of(content_id()).boxed()
            };
            let status = if kind == Kind::Status {
                select(StatusCode::ALL.to_vec()).prop_map(Some).boxed()
            } else {
                Just(None).boxed()
            };
            let routing = (
                proptest::option::of(routing_text()),
                0u8..=4,
                proptest::option::of(date()),
                refers_to,
                status,
            )
                .prop_map(|(doc_type, priority, due, refers_to, status)| Routing {
                    doc_type,
                    priority,
                    due,
                    refers_to,
                    status,
                });
            let mut to: BTreeSet<AgencyId> = to;
            to.remove(&from);
            (
                Just(kind),
                Just(from),
                Just(to),
                Just(seq),
                Just(prev),
                Just(created_ms),
                routing,
                payload,
            )
        })
        .prop_filter_map(
            "a non-roster envelope needs a recipient",
            |(kind, from, to, seq, prev, created_ms, routing, payload)| {
                if to.is_empty() && kind != Kind::Roster {
                    return None;
                }
                Some(EnvelopeBody {
                    v: ENVELOPE_VERSION,
                    kind,
                    from,
                    to: to.into_iter().collect(),
                    seq,
                    prev: (seq > 1).then_some(prev),
                    created_ms,
                    routing,
                    payload,
                })
            },
        )
}

/// A few fixed sender keys (key generation is not what is under test).
fn sender_key(i: usize) -> &'static SigningKey {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0u8..4)
            .map(|i| SigningKey::from_seed(&[i.wrapping_add(1); 32]))
            .collect()
    });
    &keys[i % keys.len()]
}

/// Mutations of a valid input: flips, overwrites, truncation, insertion and removal.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = input.to_vec();
    for m in mutations {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, bit) => {
                let at = i.index(b.len());
                b[at] ^= 1 << bit;
            }
            Mutation::Set(i, v) => {
                let at = i.index(b.len());
                b[at] = *v;
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len())),
            Mutation::Insert(i, v) => {
                let at = i.index(b.len() + 1);
                b.splice(at..at, v.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i.index(b.len());
                let len = n.index(b.len() - at).min(16) + 1;
                b.drain(at..(at + len).min(b.len()));
            }
        }
    }
    b
}

fn sample_envelope() -> &'static SignedEnvelope {
    static ENV: OnceLock<SignedEnvelope> = OnceLock::new();
    ENV.get_or_init(|| {
        let body = EnvelopeBody {
            v: ENVELOPE_VERSION,
            kind: Kind::Update,
            from: AgencyId::parse("000.00.00.G22").unwrap(),
            to: vec![
                AgencyId::parse("000.00.00.H41").unwrap(),
                AgencyId::parse("000.00.24.H44").unwrap(),
            ],
            seq: 7,
            prev: Some(ContentId([3; 32])),
            created_ms: 1_790_000_000_000,
            routing: Routing {
                doc_type: Some("1".into()),
                priority: 3,
                due: Some("2026-12-31".into()),
                refers_to: Some(ContentId([4; 32])),
                status: None,
            },
            payload: Payload::None,
        };
        let inline = InlinePayload {
            manifest: vec![9; 40],
            chunk: vec![8; 100],
        };
        SignedEnvelope::sign_inline(body, &inline, sender_key(0)).unwrap()
    })
}

// ---------------------------------------------------------------------------------------------
// Envelopes.

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn envelope_round_trips(body in valid_body(), k in 0usize..4) {
        let key = sender_key(k);
        let env = sign_env(body.clone(), key);
        let mut expected = body.clone();
        expected.payload = env.body().payload.clone();
        prop_assert_eq!(env.body(), &expected);
        prop_assert_eq!(env.id(), ContentId::of(&env.header_bytes()));
        let back = SignedEnvelope::decode(env.bytes()).unwrap();
        prop_assert_eq!(&back, &env);
        back.verify(&key.verifying_key()).unwrap();
        // Signing again gives the same bytes (deterministic CBOR, deterministic Ed25519).
        let again = match back.inline() {
            Some(inline) => SignedEnvelope::sign_inline(back.body().clone(), &inline, key).unwrap(),
            None => SignedEnvelope::sign(back.body().clone(), key).unwrap(),
        };
        prop_assert_eq!(again.bytes(), env.bytes());
        // The printable content id round-trips.
        prop_assert_eq!(ContentId::parse(&env.id().to_string()).unwrap(), env.id());
        // Another key does not verify it.
        prop_assert!(back.verify(&sender_key(k + 1).verifying_key()).is_err());
    }

    #[test]
    fn any_bit_flip_is_rejected(body in valid_body(), bit in any::<Index>()) {
        let key = sender_key(0);
        let env = sign_env(body, key);
        let bit = bit.index(env.bytes().len() * 8);
        let mut bytes = env.bytes().to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        if let Ok(decoded) = SignedEnvelope::decode(&bytes) {
            prop_assert_ne!(decoded.id(), env.id());
            prop_assert!(
                decoded.verify(&key.verifying_key()).is_err(),
                "bit {} flipped and the envelope still verifies", bit
            );
        }
    }
}

/// Exhaustive: every single-bit flip of a typical envelope is refused.
#[test]
fn every_bit_flip_of_a_sample_envelope_is_rejected() {
    let env = sample_envelope();
    let public = sender_key(0).verifying_key();
    let mut decoded_but_bad_signature = 0;
    for bit in 0..env.bytes().len() * 8 {
        let mut bytes = env.bytes().to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        if let Ok(decoded) = SignedEnvelope::decode(&bytes) {
            assert!(
                decoded.verify(&public).is_err(),
                "flipping bit {bit} still verifies"
            );
            assert_ne!(decoded.id(), env.id());
            decoded_but_bad_signature += 1;
        }
    }
    // Flips inside the signature and inside byte strings still decode: the signature is
    // what catches them, so make sure that path was exercised.
    assert!(decoded_but_bad_signature > 64 * 8);
}

// ---------------------------------------------------------------------------------------------
// Decoders never panic.

fn sample_roster_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let roots: Vec<SigningKey> = (10u8..13)
            .map(|i| SigningKey::from_seed(&[i; 32]))
            .collect();
        let roster = small_roster(&roots, 2, 1);
        let mut signed = SignedRoster::propose(&roster).unwrap();
        signed.sign(&roots[0]);
        signed.sign(&roots[1]);
        signed.to_bytes().unwrap()
    })
}

fn sample_key_file() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        KeyFile::signing("000.00.00.G22", sender_key(0))
            .to_text()
            .to_string()
    })
}

fn sample_document() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let g22 = AgencyId::parse("000.00.00.G22").unwrap();
        let h41 = AgencyId::parse("000.00.00.H41").unwrap();
        example_document(&g22, &[h41], "Thử nghiệm")
            .to_bytes()
            .unwrap()
    })
}

fn feed_all_decoders(bytes: &[u8]) {
    let _ = SignedEnvelope::decode(bytes);
    let _ = SignedRoster::decode(bytes).map(|s| s.roster());
    let _ = cbor::check_canonical(bytes, usize::MAX);
    let _ = cbor::from_canonical::<Value>(bytes, usize::MAX);
    let _ = Document::from_bytes(bytes);
    let text = String::from_utf8_lossy(bytes);
    let _ = ContentId::parse(&text);
    let _ = KeyFile::parse(&text);
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        feed_all_decoders(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = ContentId::parse(&text);
        let _ = KeyFile::parse(&text);
        let _ = AgencyId::parse_any(&text);
        let _ = StatusCode::parse(&text);
    }

    #[test]
    fn mutated_envelopes_never_panic(m in vec(mutation(), 1..4)) {
        let env = sample_envelope();
        let bytes = mutate(env.bytes(), &m);
        if let Ok(decoded) = SignedEnvelope::decode(&bytes) {
            // Anything that still decodes must not verify unless it is the original.
            if bytes != env.bytes() {
                prop_assert!(decoded.verify(&sender_key(0).verifying_key()).is_err());
            }
        }
        feed_all_decoders(&bytes);
    }

    #[test]
    fn mutated_rosters_never_panic(m in vec(mutation(), 1..4)) {
        let bytes = mutate(sample_roster_bytes(), &m);
        if let Ok(signed) = SignedRoster::decode(&bytes) {
            let _ = RosterBook::genesis(signed);
        }
    }

    #[test]
    fn mutated_documents_never_panic(m in vec(mutation(), 1..4)) {
        let _ = Document::from_bytes(&mutate(sample_document(), &m));
    }

    #[test]
    fn mutated_key_files_never_panic(m in vec(mutation(), 1..4)) {
        let bytes = mutate(sample_key_file().as_bytes(), &m);
        let _ = KeyFile::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_content_ids_never_panic(digest in any::<[u8; 32]>(), m in vec(mutation(), 1..4)) {
        let s = ContentId(digest).to_string();
        let bytes = mutate(s.as_bytes(), &m);
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(id) = ContentId::parse(&text) {
            // Only the canonical spelling parses.
            prop_assert_eq!(id.to_string(), text.as_ref());
        }
    }
}

/// Key files round-trip for any owner label without line breaks.
#[test]
fn key_files_round_trip_for_any_owner() {
    proptest!(config(64), |(owner in "[^\\r\\n]{0,40}", seed in any::<[u8; 32]>())| {
        let key = SigningKey::from_seed(&seed);
        let text = KeyFile::signing(&owner, &key).to_text();
        let back = KeyFile::parse(&text).unwrap();
        prop_assert_eq!(&back.owner, &owner);
        prop_assert_eq!(back.signing_key().unwrap().verifying_key(), key.verifying_key());
        let enc = EncryptionSecret::from_bytes(&seed);
        let text = KeyFile::encryption(&owner, &enc).to_text();
        let back = KeyFile::parse(&text).unwrap();
        prop_assert_eq!(back.encryption_secret().unwrap().public_key(), enc.public_key());
    });
}

// ---------------------------------------------------------------------------------------------
// Deterministic CBOR over arbitrary values.

fn cbor_integer() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..30).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // The full negative range down to -2^64.
        any::<u64>().prop_map(|n| Value::Integer((-1 - i128::from(n)).try_into().unwrap())),
    ]
}

fn cbor_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        cbor_integer(),
        "\\PC{0,12}".prop_map(Value::Text),
        vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn cbor_key() -> impl Strategy<Value = Value> {
    prop_oneof![
        cbor_integer(),
        "\\PC{0,6}".prop_map(Value::Text),
        vec(any::<u8>(), 0..6).prop_map(Value::Bytes),
    ]
}

/// Nested arrays and maps (at most 5 deep, well under MAX_DEPTH) with unique map keys in
/// arbitrary order.
fn cbor_value() -> impl Strategy<Value = Value> {
    cbor_leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec((cbor_key(), inner), 0..8).prop_map(|entries| {
                let mut seen = Vec::new();
                Value::Map(
                    entries
                        .into_iter()
                        .filter(|(k, _)| {
                            let fresh = !seen.contains(k);
                            seen.push(k.clone());
                            fresh
                        })
                        .collect(),
                )
            }),
        ]
    })
}

/// The value with every map sorted the deterministic way (bytewise by encoded key).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        Value::Map(entries) => {
            let mut e: Vec<(Vec<u8>, Value, Value)> = entries
                .iter()
                .map(|(k, v)| {
                    let mut enc = Vec::new();
                    ciborium::into_writer(k, &mut enc).unwrap();
                    (enc, sorted(k), sorted(v))
                })
                .collect();
            e.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(e.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        other => other.clone(),
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn canonical_cbor_of_arbitrary_values(value in cbor_value()) {
        prop_assume!(depth(&value) <= MAX_DEPTH);
        let bytes = cbor::to_canonical(&value).unwrap();
        cbor::check_canonical(&bytes, bytes.len()).unwrap();
        let plain: Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        prop_assert_eq!(&plain, &sorted(&value));
        let strict: Value = cbor::from_canonical(&bytes, bytes.len()).unwrap();
        prop_assert_eq!(&strict, &plain);
        // Canonical form is a fixed point.
        prop_assert_eq!(cbor::to_canonical(&strict).unwrap(), bytes);
    }

    #[test]
    fn canonical_cbor_of_typed_values(
        map in proptest::collection::hash_map("\\PC{0,10}", (any::<u64>(), any::<Option<i64>>()), 0..12),
        list in vec(proptest::option::of(vec(any::<u8>(), 0..12)), 0..6),
    ) {
        // HashMap iterates in random order: to_canonical must sort it.
        let bytes = cbor::to_canonical(&map).unwrap();
        cbor::check_canonical(&bytes, usize::MAX).unwrap();
        let back: HashMap<String, (u64, Option<i64>)> =
            cbor::from_canonical(&bytes, usize::MAX).unwrap();
        prop_assert_eq!(&back, &map);
        let bytes = cbor::to_canonical(&list).unwrap();
        let back: Vec<Option<Vec<u8>>> = cbor::from_canonical(&bytes, usize::MAX).unwrap();
        prop_assert_eq!(back, list);
    }

    #[test]
    fn non_canonical_reencodings_are_refused(value in cbor_value()) {
        prop_assume!(depth(&value) <= MAX_DEPTH);
        let canonical = cbor::to_canonical(&value).unwrap();
        // Whatever ciborium writes for the unsorted value is accepted only if identical.
        let mut raw = Vec::new();
        ciborium::into_writer(&value, &mut raw).unwrap();
        prop_assert_eq!(cbor::check_canonical(&raw, usize::MAX).is_ok(), raw == canonical);
    }
}

// ---------------------------------------------------------------------------------------------
// Roster thresholds.

fn small_roster(roots: &[SigningKey], threshold: u8, epoch: u64) -> Roster {
    let id = AgencyId::parse("000.00.00.G22").unwrap();
    Roster {
        epoch,
        issued_ms: 1_790_000_000_000,
        federation: Federation {
            name: "lienthong-prop".into(),
            threshold,
            root_keys: roots.iter().map(SigningKey::verifying_key).collect(),
            witness_quorum: 0,
        },
        agencies: vec![AgencyEntry {
            level: 1,
            parent: None,
            id,
            name: "Government Office".into(),
            signing_key: SigningKey::from_seed(&[0x77; 32]).verifying_key(),
            encryption_key: EncryptionSecret::from_bytes(&[0x78; 32]).public_key(),
            node: "12D3KooWnode".into(),
            addrs: vec![],
            state: AgencyState::Active,
        }],
        central: vec![],
    }
}

fn root_keys() -> &'static [SigningKey] {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (0u8..6)
            .map(|i| SigningKey::from_seed(&[0x40 + i; 32]))
            .collect()
    })
}

/// A threshold, a set of root signers below it, plus noise: duplicated signatures by the
/// same key and corrupted signatures by the other roots.
fn under_threshold() -> impl Strategy<Value = (usize, u8, Vec<usize>, Vec<usize>, Vec<usize>)> {
    (1usize..=5)
        .prop_flat_map(|n| (Just(n), 1u8..=u8::try_from(n).unwrap()))
        .prop_flat_map(|(n, k)| {
            let below =
                proptest::sample::subsequence((0..n).collect::<Vec<_>>(), 0..usize::from(k));
            (Just(n), Just(k), below, vec(0..n, 0..4), vec(0..n, 0..4))
        })
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn roster_below_threshold_is_refused(
        (n, k, signers, dup, corrupt) in under_threshold()
    ) {
        let roots = &root_keys()[..n];
        let genesis_roster = small_roster(roots, k, 1);
        let mut genesis = SignedRoster::propose(&genesis_roster).unwrap();
        for r in roots {
            genesis.sign(r);
        }
        let mut book = RosterBook::genesis(genesis).unwrap();

        let next = small_roster(roots, k, 2);
        let mut signed = SignedRoster::propose(&next).unwrap();
        for &i in &signers {
            signed.sign(&roots[i]);
        }
        // Noise that must never count: the same valid signature again (inserted directly,
        // bypassing `sign`, which would replace it) and corrupted signatures by other roots.
        let mut noisy = signed.clone();
        for &i in &dup {
            if let Some(s) = signed.sigs.iter().find(|s| s.key == roots[i].verifying_key()) {
                noisy.sigs.push(s.clone());
            }
        }
        for &i in &corrupt {
            if !signers.contains(&i) {
                let mut sig = roots[i].sign(SignatureDomain::Roster, &signed.roster);
                sig.0[0] ^= 1;
                noisy.sigs.push(RootSignature { key: roots[i].verifying_key(), sig });
            }
        }
        noisy.sigs.sort_by_key(|a| a.key);
        for candidate in [signed.clone(), noisy.clone()] {
            let err = book.apply(candidate.clone()).unwrap_err();
            prop_assert!(matches!(err, RosterError::Threshold { .. }), "{}", err);
            prop_assert_eq!(book.current().epoch, 1);
            prop_assert!(RosterBook::genesis(candidate).is_err());
        }
        // The duplicated form does not even decode (signatures must be sorted and unique).
        if noisy.sigs.windows(2).any(|w| w[0].key == w[1].key) {
            prop_assert!(SignedRoster::decode(&noisy.to_bytes().unwrap()).is_err());
        }
        // Positive control: adding the missing roots reaches the threshold.
        for r in roots.iter().take(usize::from(k)) {
            signed.sign(r);
        }
        let decoded = SignedRoster::decode(&signed.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(book.apply(decoded).unwrap().epoch, 2);
    }
}

/// Regression: one root's signature listed twice used to count twice towards the threshold
/// (`SignedRoster::sigs` is public, so a duplicate need not pass through `decode`).
#[test]
fn a_repeated_root_signature_counts_once() {
    let roots = &root_keys()[..2];
    let mut genesis = SignedRoster::propose(&small_roster(roots, 2, 1)).unwrap();
    genesis.sign(&roots[0]);
    genesis.sign(&roots[1]);
    let mut book = RosterBook::genesis(genesis).unwrap();
    let mut next = SignedRoster::propose(&small_roster(roots, 2, 2)).unwrap();
    next.sign(&roots[0]);
    next.sigs.push(next.sigs[0].clone());
    assert!(matches!(
        book.apply(next.clone()),
        Err(RosterError::Threshold {
            valid: 1,
            threshold: 2
        })
    ));
    assert!(RosterBook::genesis(next).is_err());
}

// ---------------------------------------------------------------------------------------------
// Status transitions.

fn step() -> impl Strategy<Value = (Party, StatusCode)> {
    (
        select(vec![Party::Sender, Party::Recipient]),
        select(StatusCode::ALL.to_vec()),
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn status_sequences_keep_invariants(steps in vec(step(), 0..24)) {
        use StatusCode::*;
        let mut chain = StatusChain::default();
        let mut arrived = false;
        let mut history = Vec::new();
        for (party, code) in steps {
            let before = chain;
            let result = chain.apply(party, code);
            if party != code.party() {
                prop_assert!(result.is_err(), "{} accepted from the wrong party", code);
            }
            let Ok(after) = result else { continue };
            history.push(code);
            // Nothing is accepted after a recall.
            prop_assert_ne!(before.stage, Stage::Recalled, "{} after a recall ({:?})", code, history);
            match code {
                RecallAgreed | RecallRefused => {
                    prop_assert!(before.request_pending, "{} without a pending 13", code);
                    prop_assert!(!after.request_pending);
                }
                RecallRequested => {
                    prop_assert!(!before.request_pending, "13 while a 13 is pending");
                    prop_assert!(!matches!(before.stage, Stage::At(Rejected | Completed)));
                    prop_assert!(after.request_pending);
                    prop_assert_eq!(after.stage, before.stage);
                }
                _ => {
                    // Only arrival (a fact) may be recorded while a 13 waits for its answer.
                    prop_assert!(!before.request_pending || code == Arrived, "{} while a 13 is pending", code);
                    prop_assert_eq!(after.request_pending, before.request_pending);
                    prop_assert_eq!(after.stage, Stage::At(code));
                }
            }
            match after.stage {
                Stage::Recalled => prop_assert_eq!(code, RecallAgreed),
                Stage::Sent => prop_assert!(!arrived, "back to 'sent' after arrival"),
                Stage::At(c) => {
                    prop_assert!(!matches!(c, RecallRequested | RecallAgreed | RecallRefused));
                    arrived = true;
                }
            }
            // Arrival comes first and only once; rejection only right after it; processing
            // codes only after acceptance.
            match code {
                Arrived => prop_assert_eq!(before.stage, Stage::Sent),
                Rejected => prop_assert_eq!(before.stage, Stage::At(Arrived)),
                Accepted => prop_assert_eq!(before.stage, Stage::At(Arrived)),
                Assigned | Processing | Completed => prop_assert!(matches!(
                    before.stage,
                    Stage::At(Accepted | Assigned | Processing)
                )),
                _ => {}
            }
            // Finished chains take nothing more.
            if matches!(after.stage, Stage::At(Rejected | Completed) | Stage::Recalled) {
                for c in StatusCode::ALL {
                    prop_assert!(after.apply(c.party(), c).is_err(), "{} after {:?}", c, after.stage);
                }
            }
            chain = after;
        }
    }
}
