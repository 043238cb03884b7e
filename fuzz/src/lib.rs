//! Fixtures shared by the fuzz targets and the seed generator (`examples/seeds.rs`): fixed
//! keys, a genesis roster that lists them, and the parameters of one central node's log.
//! Everything is derived from constant seeds, so seeds and targets agree on the keys.

use ed25519_dalek::SigningKey as DalekKey;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::audit::LogParams;
use lienthong_protocol::keys::{EncryptionSecret, SigningKey, VerifyingKey};
use lienthong_protocol::ledger;
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, Roster, SignedRoster,
};
use lienthong_protocol::signed_note::{Ed25519Signer, Ed25519Verifier};
use lienthong_protocol::tlog_cosignature::{Cosigner, CosignerKey};

/// The federation's name in the fixture roster.
pub const FEDERATION: &str = "lienthong-fuzz";
/// Seeds of the root keys; the genesis roster is signed by the first two (threshold 2).
pub const ROOT_SEEDS: [u8; 3] = [10, 11, 12];
/// Seed of the log key of `central-a` (checkpoints).
pub const LOG_SEED: u8 = 0x11;
/// Seed of `central-b`'s key, which cosigns `central-a`'s checkpoints as a witness.
pub const WITNESS_SEED: u8 = 0x21;

/// The member agencies: code, name, seed of its signing and encryption keys.
pub const AGENCIES: [(&str, &str, u8); 3] = [
    ("000.00.00.G22", "Government Office", 20),
    ("000.00.00.H41", "Province 41", 21),
    ("000.46.24.H44", "Unit 46, district 24", 22),
];

/// The agency id `code` (one of [`AGENCIES`]).
pub fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).expect("fixture agency codes are valid")
}

/// An Ed25519 key from a one-byte seed.
pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

/// The signing key of agency `code`.
pub fn agency_key(code: &str) -> SigningKey {
    let seed = AGENCIES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(0, |a| a.2);
    signing_key(seed)
}

/// The encryption secret of agency `code`.
pub fn agency_secret(code: &str) -> EncryptionSecret {
    let seed = AGENCIES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(0, |a| a.2);
    EncryptionSecret::from_bytes(&[seed; 32])
}

fn dalek(seed: u8) -> DalekKey {
    DalekKey::from_bytes(&[seed; 32])
}

fn verifying(seed: u8) -> VerifyingKey {
    VerifyingKey(dalek(seed).verifying_key().to_bytes())
}

/// The origin line of `central-a`'s checkpoints.
pub fn origin() -> String {
    ledger::log_origin(FEDERATION, "central-a")
}

/// `central-a`'s checkpoint signer.
pub fn log_signer() -> Ed25519Signer {
    Ed25519Signer::new(&origin(), dalek(LOG_SEED)).expect("valid key name")
}

/// `central-a`'s checkpoint verifier.
pub fn log_verifier() -> Ed25519Verifier {
    log_signer().verifier()
}

/// `central-b` as a witness of `central-a`.
pub fn witness() -> Cosigner {
    Cosigner::new(
        &ledger::log_origin(FEDERATION, "central-b"),
        dalek(WITNESS_SEED),
    )
    .expect("valid key name")
}

/// `central-b`'s cosignature verifier.
pub fn witness_key() -> CosignerKey {
    witness().public()
}

/// What an auditor of `central-a` knows: origin, log key, one witness, quorum 1.
pub fn log_params() -> LogParams {
    LogParams {
        origin: origin(),
        log_key: log_verifier(),
        witnesses: vec![witness_key()],
        quorum: 1,
    }
}

/// Epoch 1: the three agencies, two central nodes, root keys [`ROOT_SEEDS`], threshold 2.
pub fn roster() -> Roster {
    let agencies = AGENCIES
        .iter()
        .map(|&(code, name, seed)| {
            let id = agency(code);
            AgencyEntry {
                level: id.level().unwrap_or(1),
                parent: id.parent(),
                id,
                name: name.into(),
                signing_key: signing_key(seed).verifying_key(),
                encryption_key: EncryptionSecret::from_bytes(&[seed; 32]).public_key(),
                node: format!("12D3KooWnode{seed}"),
                addrs: vec![format!(
                    "/ip4/127.0.0.1/udp/{}/quic-v1",
                    4000 + u16::from(seed)
                )],
                state: AgencyState::Active,
            }
        })
        .collect();
    let central = |name: &str, seed: u8, port: u16| CentralNode {
        name: name.into(),
        peer_id: format!("12D3KooW{name}"),
        addrs: vec![format!("/ip4/127.0.0.1/udp/{port}/quic-v1")],
        log_key: verifying(seed),
        http_url: format!("http://127.0.0.1:{port}"),
    };
    Roster {
        epoch: 1,
        issued_ms: 1_790_000_000_000,
        federation: Federation {
            name: FEDERATION.into(),
            threshold: 2,
            root_keys: ROOT_SEEDS
                .iter()
                .map(|&s| signing_key(s).verifying_key())
                .collect(),
            witness_quorum: 1,
        },
        agencies,
        central: vec![
            central("central-a", LOG_SEED, 4100),
            central("central-b", WITNESS_SEED, 4101),
        ],
    }
}

/// [`roster`] signed by the first two root keys.
pub fn genesis() -> SignedRoster {
    let mut signed = SignedRoster::propose(&roster()).expect("the fixture roster encodes");
    for &seed in ROOT_SEEDS.iter().take(2) {
        signed.sign(&signing_key(seed));
    }
    signed
}

/// Frames one `audit_replay` record: kind, 16-bit little-endian length, bytes.
pub fn record(kind: u8, bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = vec![kind];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
    out
}

/// `audit_replay` record kinds.
pub mod kind {
    /// The next ledger entry.
    pub const ENTRY: u8 = 0;
    /// A signed checkpoint.
    pub const CHECKPOINT: u8 = 1;
    /// `[n: u8][n × 32-byte consistency proof][signed checkpoint]`.
    pub const CHECKPOINT_WITH_PROOF: u8 = 2;
    /// A ledger entry pushed with a wrong index.
    pub const ENTRY_WRONG_INDEX: u8 = 3;
}
