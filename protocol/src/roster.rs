//! The federation roster (DESIGN §3): who may take part, with which keys, in which state,
//! signed by k of n root keys of the central office, and the rules for accepting a newer
//! epoch.
//!
//! A node starts from a configured genesis roster ([`RosterBook::genesis`]) and accepts only
//! strictly newer epochs signed by at least `threshold` distinct root keys *of the roster it
//! already trusts* ([`RosterBook::apply`]). Root keys rotate by an epoch signed by the old
//! ones. Signatures cover `SignatureDomain::Roster.prefix() || roster bytes`, where the
//! roster bytes are carried verbatim (deterministic CBOR) inside [`SignedRoster`].

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::agency::AgencyId;
use crate::cbor::{self, CborError};
use crate::keys::{EncryptionKey, KeyError, Signature, SignatureDomain, SigningKey, VerifyingKey};

/// Largest encoded signed roster, in bytes (room for about 20,000 agencies).
pub const MAX_ROSTER_LEN: usize = 32 * 1024 * 1024;
/// Most agencies one roster lists.
pub const MAX_AGENCIES: usize = 100_000;
/// Most root keys (n of the k-of-n threshold).
pub const MAX_ROOT_KEYS: usize = 16;
/// Most central nodes.
pub const MAX_CENTRAL_NODES: usize = 32;
/// Most addresses listed for one agency or central node.
pub const MAX_ADDRS: usize = 16;
/// Longest name, address or URL, in bytes.
pub const MAX_TEXT: usize = 256;

/// An agency's standing in the federation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgencyState {
    /// May send and receive.
    Active,
    /// Temporarily barred from sending; its pending inbound documents wait.
    Suspended,
    /// Permanently barred; senders are told so.
    Revoked,
    /// Merged into or replaced by another agency, which receives in its place.
    #[serde(rename = "succeeded")]
    SucceededBy(AgencyId),
}

/// One member agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyEntry {
    /// The agency code (or an admitted other form).
    pub id: AgencyId,
    /// Official name.
    pub name: String,
    /// Administrative level 1 (central / province) to 4 (commune).
    pub level: u8,
    /// Parent unit, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<AgencyId>,
    /// Ed25519 key for envelopes and statuses.
    pub signing_key: VerifyingKey,
    /// X25519 key for sealed payloads.
    pub encryption_key: EncryptionKey,
    /// The libp2p peer id (base58) of the node that hosts this agency.
    pub node: String,
    /// That node's listen addresses (multiaddrs), for dialling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<String>,
    /// Standing.
    pub state: AgencyState,
}

/// One central node (bootstrap, relay, custodian, audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralNode {
    /// Operator-chosen name; also the log's origin line in checkpoints.
    pub name: String,
    /// libp2p peer id (base58).
    pub peer_id: String,
    /// Listen addresses (multiaddrs).
    pub addrs: Vec<String>,
    /// Ed25519 key that signs this node's log checkpoints and cosignatures.
    pub log_key: VerifyingKey,
    /// Base URL of its HTTP endpoints (tiles, checkpoint, roster).
    pub http_url: String,
}

/// Federation-wide parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// Human-readable federation name (e.g. `lienthong-vn`).
    pub name: String,
    /// k: distinct root signatures needed for the next epoch.
    pub threshold: u8,
    /// n root keys of the central office.
    pub root_keys: Vec<VerifyingKey>,
    /// Cosignatures (from other central nodes) a checkpoint needs to count as witnessed.
    pub witness_quorum: u8,
}

/// One epoch of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// Monotonic version.
    pub epoch: u64,
    /// When the epoch was issued (ms since the Unix epoch).
    pub issued_ms: u64,
    /// Parameters and root keys.
    pub federation: Federation,
    /// Member agencies, sorted by id.
    pub agencies: Vec<AgencyEntry>,
    /// Central nodes, sorted by name.
    pub central: Vec<CentralNode>,
}

/// A root key's signature on a roster epoch, naming the key by its index in the signing
/// (trusted) roster's root key list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootSignature {
    /// The public key that signed (must be a root key of the roster being updated).
    pub key: VerifyingKey,
    /// The signature.
    pub sig: Signature,
}

/// A roster epoch with its root signatures, as published, gossiped and persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRoster {
    /// The roster's deterministic CBOR bytes, verbatim.
    #[serde(with = "serde_bytes")]
    pub roster: Vec<u8>,
    /// Root signatures, sorted by key.
    pub sigs: Vec<RootSignature>,
}

/// Why a roster or a look-up was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterError {
    #[error(transparent)]
    Encoding(#[from] CborError),
    #[error("roster field `{field}`: {problem}")]
    Field { field: String, problem: String },
    #[error("epoch {new} is not newer than the current epoch {current}")]
    Stale { current: u64, new: u64 },
    #[error(
        "only {valid} valid root signatures from distinct trusted root keys; {threshold} are needed"
    )]
    Threshold { valid: usize, threshold: u8 },
    #[error("signature by a key that is not a root key of the trusted roster: {0}")]
    UnknownSigner(String),
    #[error("agency {0} is not in the roster")]
    UnknownAgency(AgencyId),
    #[error("agency {0} is suspended")]
    Suspended(AgencyId),
    #[error("agency {0} is revoked")]
    Revoked(AgencyId),
    #[error("agency {id} was succeeded by {successor}")]
    Succeeded { id: AgencyId, successor: AgencyId },
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn field_err(field: impl Into<String>, problem: impl Into<String>) -> RosterError {
    RosterError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

fn check_text(field: &str, text: &str) -> Result<(), RosterError> {
    if text.is_empty() || text.len() > MAX_TEXT || text.chars().any(char::is_control) {
        return Err(field_err(
            field,
            format!("must be 1 to {MAX_TEXT} bytes without control characters"),
        ));
    }
    Ok(())
}

impl Roster {
    /// Checks every structural rule: limits, sorting, uniqueness, key validity, hierarchy.
    pub fn validate(&self) -> Result<(), RosterError> {
        let f = &self.federation;
        check_text("federation.name", &f.name)?;
        let n = f.root_keys.len();
        if n == 0 || n > MAX_ROOT_KEYS {
            return Err(field_err(
                "federation.root_keys",
                format!("must list 1 to {MAX_ROOT_KEYS} keys, not {n}"),
            ));
        }
        if f.threshold == 0 || usize::from(f.threshold) > n {
            return Err(field_err(
                "federation.threshold",
                format!("{} is not between 1 and {n}", f.threshold),
            ));
        }
        if f.root_keys.iter().collect::<BTreeSet<_>>().len() != n {
            return Err(field_err("federation.root_keys", "a key is listed twice"));
        }
        for key in &f.root_keys {
            key.to_dalek()?;
        }
        if usize::from(f.witness_quorum) > self.central.len().saturating_sub(1)
            && !self.central.is_empty()
        {
            return Err(field_err(
                "federation.witness_quorum",
                format!(
                    "{} is more than the other central nodes ({})",
                    f.witness_quorum,
                    self.central.len() - 1
                ),
            ));
        }
        if self.agencies.len() > MAX_AGENCIES {
            return Err(field_err(
                "agencies",
                format!(
                    "{} agencies; the limit is {MAX_AGENCIES}",
                    self.agencies.len()
                ),
            ));
        }
        if self
            .agencies
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.id >= b.id))
        {
            return Err(field_err(
                "agencies",
                "must be sorted by id without repeats",
            ));
        }
        let mut signing_keys = BTreeSet::new();
        for a in &self.agencies {
            let at = |name: &str| format!("agencies[{}].{name}", a.id);
            check_text(&at("name"), &a.name)?;
            check_text(&at("node"), &a.node)?;
            if !(1..=4).contains(&a.level) {
                return Err(field_err(
                    at("level"),
                    format!("{} is not a level 1 to 4", a.level),
                ));
            }
            if let Some(derived) = a.id.level() {
                if derived != a.level {
                    return Err(field_err(
                        at("level"),
                        format!("{} but the code says level {derived}", a.level),
                    ));
                }
                if a.parent != a.id.parent() {
                    return Err(field_err(
                        at("parent"),
                        "does not match the parent derived from the code",
                    ));
                }
            }
            a.signing_key
                .to_dalek()
                .map_err(|_| field_err(at("signing_key"), "not a valid Ed25519 public key"))?;
            if !signing_keys.insert(a.signing_key) {
                return Err(field_err(
                    at("signing_key"),
                    "already used by another agency",
                ));
            }
            if a.addrs.len() > MAX_ADDRS {
                return Err(field_err(
                    at("addrs"),
                    format!("more than {MAX_ADDRS} addresses"),
                ));
            }
            for addr in &a.addrs {
                check_text(&at("addrs"), addr)?;
            }
            if let AgencyState::SucceededBy(successor) = &a.state
                && (successor == &a.id || self.agency(successor).is_none())
            {
                return Err(field_err(
                    at("state"),
                    "the successor must be another agency in the roster",
                ));
            }
        }
        if self.central.len() > MAX_CENTRAL_NODES {
            return Err(field_err(
                "central",
                format!("more than {MAX_CENTRAL_NODES} central nodes"),
            ));
        }
        if self
            .central
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.name >= b.name))
        {
            return Err(field_err(
                "central",
                "must be sorted by name without repeats",
            ));
        }
        let mut peer_ids = BTreeSet::new();
        for c in &self.central {
            let at = |name: &str| format!("central[{}].{name}", c.name);
            check_text(&at("name"), &c.name)?;
            check_text(&at("peer_id"), &c.peer_id)?;
            check_text(&at("http_url"), &c.http_url)?;
            c.log_key
                .to_dalek()
                .map_err(|_| field_err(at("log_key"), "not a valid Ed25519 public key"))?;
            if !peer_ids.insert(&c.peer_id) {
                return Err(field_err(
                    at("peer_id"),
                    "already used by another central node",
                ));
            }
            if c.addrs.len() > MAX_ADDRS {
                return Err(field_err(
                    at("addrs"),
                    format!("more than {MAX_ADDRS} addresses"),
                ));
            }
        }
        Ok(())
    }

    /// The entry for `id`, whatever its state.
    pub fn agency(&self, id: &AgencyId) -> Option<&AgencyEntry> {
        self.agencies
            .binary_search_by(|a| a.id.cmp(id))
            .ok()
            .and_then(|i| self.agencies.get(i))
    }

    /// The entry for `id` if it may act now (active), or why not.
    pub fn active_agency(&self, id: &AgencyId) -> Result<&AgencyEntry, RosterError> {
        let entry = self
            .agency(id)
            .ok_or_else(|| RosterError::UnknownAgency(id.clone()))?;
        match &entry.state {
            AgencyState::Active => Ok(entry),
            AgencyState::Suspended => Err(RosterError::Suspended(id.clone())),
            AgencyState::Revoked => Err(RosterError::Revoked(id.clone())),
            AgencyState::SucceededBy(successor) => Err(RosterError::Succeeded {
                id: id.clone(),
                successor: successor.clone(),
            }),
        }
    }

    /// Every peer id that may connect: nodes hosting listed agencies, and central nodes.
    pub fn allowed_peers(&self) -> BTreeSet<&str> {
        let agencies = self
            .agencies
            .iter()
            .filter(|a| a.state != AgencyState::Revoked)
            .map(|a| a.node.as_str());
        agencies
            .chain(self.central.iter().map(|c| c.peer_id.as_str()))
            .collect()
    }

    /// The deterministic CBOR bytes that root keys sign.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RosterError> {
        Ok(cbor::to_canonical(self)?)
    }
}

impl SignedRoster {
    /// An unsigned proposal for `roster` (signatures are added by key holders).
    pub fn propose(roster: &Roster) -> Result<Self, RosterError> {
        roster.validate()?;
        Ok(Self {
            roster: roster.to_bytes()?,
            sigs: Vec::new(),
        })
    }

    /// Adds (or replaces) `key`'s signature, keeping signatures sorted by key.
    pub fn sign(&mut self, key: &SigningKey) {
        let public = key.verifying_key();
        let sig = key.sign(SignatureDomain::Roster, &self.roster);
        self.sigs.retain(|s| s.key != public);
        let at = self.sigs.partition_point(|s| s.key < public);
        self.sigs.insert(at, RootSignature { key: public, sig });
    }

    /// The roster inside (decoded and validated, signatures not checked).
    pub fn roster(&self) -> Result<Roster, RosterError> {
        let roster: Roster = cbor::from_canonical(&self.roster, MAX_ROSTER_LEN)?;
        roster.validate()?;
        Ok(roster)
    }

    /// Encodes for storage and transport.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RosterError> {
        Ok(cbor::to_canonical(self)?)
    }

    /// Decodes untrusted bytes (deterministic CBOR, size-limited).
    pub fn decode(bytes: &[u8]) -> Result<Self, RosterError> {
        let signed: Self = cbor::from_canonical(bytes, MAX_ROSTER_LEN)?;
        if signed
            .sigs
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.key >= b.key))
        {
            return Err(field_err("sigs", "must be sorted by key without repeats"));
        }
        if signed.sigs.len() > MAX_ROOT_KEYS {
            return Err(field_err(
                "sigs",
                format!("more than {MAX_ROOT_KEYS} signatures"),
            ));
        }
        Ok(signed)
    }

    /// Counts valid signatures by distinct keys of `trusted` and checks the threshold.
    /// Signatures by other keys are an error: a proposal carries only root signatures.
    pub fn check_signatures(&self, trusted: &Federation) -> Result<(), RosterError> {
        // Count each key once: `sigs` is public, so a repeated signature may reach here
        // without passing through `decode`'s sorted-and-unique check.
        let mut valid_keys = BTreeSet::new();
        for s in &self.sigs {
            if !trusted.root_keys.contains(&s.key) {
                return Err(RosterError::UnknownSigner(s.key.fingerprint()));
            }
            if s.key
                .verify(SignatureDomain::Roster, &self.roster, &s.sig)
                .is_ok()
            {
                valid_keys.insert(s.key);
            }
        }
        let valid = valid_keys.len();
        if valid < usize::from(trusted.threshold) {
            return Err(RosterError::Threshold {
                valid,
                threshold: trusted.threshold,
            });
        }
        Ok(())
    }
}

/// The roster a node trusts now, and the rules to move to the next epoch.
#[derive(Debug, Clone)]
pub struct RosterBook {
    current: Roster,
    signed: SignedRoster,
}

impl RosterBook {
    /// Trusts a genesis roster: valid, and signed by its own threshold of its own root keys.
    pub fn genesis(signed: SignedRoster) -> Result<Self, RosterError> {
        let roster = signed.roster()?;
        signed.check_signatures(&roster.federation)?;
        Ok(Self {
            current: roster,
            signed,
        })
    }

    /// Moves to a newer epoch if it is valid, strictly newer and signed by the threshold of
    /// the *current* root keys. On error nothing changes.
    pub fn apply(&mut self, signed: SignedRoster) -> Result<&Roster, RosterError> {
        let next = signed.roster()?;
        if next.epoch <= self.current.epoch {
            return Err(RosterError::Stale {
                current: self.current.epoch,
                new: next.epoch,
            });
        }
        signed.check_signatures(&self.current.federation)?;
        self.current = next;
        self.signed = signed;
        Ok(&self.current)
    }

    /// The roster in force.
    pub fn current(&self) -> &Roster {
        &self.current
    }

    /// Its signed form (to persist and to serve to peers).
    pub fn signed(&self) -> &SignedRoster {
        &self.signed
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::type_complexity,
        clippy::needless_range_loop
    )]
    use super::*;
    use crate::keys::EncryptionSecret;
    use rand_core::SeedableRng;

    struct Fixture {
        roots: Vec<SigningKey>,
        roster: Roster,
    }

    fn agency(rng: &mut rand_chacha::ChaCha20Rng, id: &str, name: &str) -> AgencyEntry {
        let id = AgencyId::parse_any(id).unwrap();
        AgencyEntry {
            level: id.level().unwrap_or(1),
            parent: id.parent(),
            id,
            name: name.into(),
            signing_key: SigningKey::generate(rng).verifying_key(),
            encryption_key: EncryptionSecret::generate(rng).public_key(),
            node: "12D3KooWnode".into(),
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            state: AgencyState::Active,
        }
    }

    fn fixture() -> Fixture {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let roots: Vec<_> = (0..3).map(|_| SigningKey::generate(&mut rng)).collect();
        let roster = Roster {
            epoch: 1,
            issued_ms: 1_790_000_000_000,
            federation: Federation {
                name: "lienthong-test".into(),
                threshold: 2,
                root_keys: roots.iter().map(SigningKey::verifying_key).collect(),
                witness_quorum: 0,
            },
            agencies: vec![
                agency(&mut rng, "000.00.00.G22", "Government Office"),
                agency(&mut rng, "000.00.00.H41", "Province 41"),
                agency(&mut rng, "000.00.24.H44", "District 24"),
                agency(&mut rng, "010203040506", "An enterprise"),
            ],
            central: vec![CentralNode {
                name: "central-a".into(),
                peer_id: "12D3KooWcentral".into(),
                addrs: vec![],
                log_key: SigningKey::generate(&mut rng).verifying_key(),
                http_url: "http://127.0.0.1:8080".into(),
            }],
        };
        Fixture { roots, roster }
    }

    fn signed(roster: &Roster, by: &[&SigningKey]) -> SignedRoster {
        let mut s = SignedRoster::propose(roster).unwrap();
        for k in by {
            s.sign(k);
        }
        s
    }

    #[test]
    fn genesis_then_threshold_signed_updates() {
        let Fixture { roots, roster } = fixture();
        assert!(matches!(
            RosterBook::genesis(signed(&roster, &[&roots[0]])),
            Err(RosterError::Threshold {
                valid: 1,
                threshold: 2
            })
        ));
        let mut book = RosterBook::genesis(signed(&roster, &[&roots[0], &roots[2]])).unwrap();
        let g22 = AgencyId::parse("000.00.00.G22").unwrap();
        book.current().active_agency(&g22).unwrap();

        let mut next = roster.clone();
        next.epoch = 2;
        next.agencies[0].state = AgencyState::Revoked;
        // One signature is not enough; the same key twice counts once (sign replaces).
        let mut once = signed(&next, &[&roots[1]]);
        once.sign(&roots[1]);
        assert!(matches!(
            book.apply(once),
            Err(RosterError::Threshold { .. })
        ));
        assert_eq!(book.current().epoch, 1);
        book.apply(signed(&next, &[&roots[1], &roots[2]])).unwrap();
        assert_eq!(
            book.current().active_agency(&g22),
            Err(RosterError::Revoked(g22.clone()))
        );
        // Replaying the same or an older epoch is refused.
        assert!(matches!(
            book.apply(signed(&next, &roots.iter().collect::<Vec<_>>())),
            Err(RosterError::Stale { .. })
        ));
    }

    #[test]
    fn root_rotation_needs_the_old_roots() {
        let Fixture { roots, roster } = fixture();
        let mut book = RosterBook::genesis(signed(&roster, &[&roots[0], &roots[1]])).unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(99);
        let new_roots: Vec<_> = (0..2).map(|_| SigningKey::generate(&mut rng)).collect();
        let mut next = roster.clone();
        next.epoch = 5;
        next.federation.root_keys = new_roots.iter().map(SigningKey::verifying_key).collect();
        assert!(matches!(
            book.apply(signed(&next, &[&new_roots[0], &new_roots[1]])),
            Err(RosterError::UnknownSigner(_))
        ));
        book.apply(signed(&next, &[&roots[0], &roots[1]])).unwrap();
        assert_eq!(book.current().epoch, 5);
    }

    #[test]
    fn structural_rules_name_the_field() {
        let Fixture { roster, .. } = fixture();
        let cases: Vec<(Box<dyn Fn(&mut Roster)>, &str)> = vec![
            (Box::new(|r| r.agencies.swap(0, 1)), "sorted"),
            (Box::new(|r| r.agencies[1].level = 2), "code says level 1"),
            (Box::new(|r| r.agencies[2].parent = None), "parent"),
            (
                Box::new(|r| r.agencies[1].signing_key = r.agencies[0].signing_key),
                "already used",
            ),
            (Box::new(|r| r.federation.threshold = 4), "threshold"),
            (Box::new(|r| r.federation.threshold = 0), "threshold"),
            (Box::new(|r| r.agencies[0].name = String::new()), "name"),
            (
                Box::new(|r| {
                    r.agencies[0].state =
                        AgencyState::SucceededBy(AgencyId::parse("000.00.00.H99").unwrap())
                }),
                "successor",
            ),
            (
                Box::new(|r| r.federation.witness_quorum = 3),
                "witness_quorum",
            ),
        ];
        for (mutate, why) in cases {
            let mut r = roster.clone();
            mutate(&mut r);
            let err = r.validate().unwrap_err().to_string();
            assert!(err.contains(why), "expected {why:?} in {err}");
        }
    }

    #[test]
    fn signed_roster_round_trips_and_lookups_work() {
        let Fixture { roots, roster } = fixture();
        let s = signed(&roster, &[&roots[0], &roots[1]]);
        let back = SignedRoster::decode(&s.to_bytes().unwrap()).unwrap();
        assert_eq!(back, s);
        let r = back.roster().unwrap();
        let ent = AgencyId::parse_any("010203040506").unwrap();
        assert_eq!(r.active_agency(&ent).unwrap().name, "An enterprise");
        let unknown = AgencyId::parse("000.00.00.H99").unwrap();
        assert_eq!(
            r.active_agency(&unknown),
            Err(RosterError::UnknownAgency(unknown.clone()))
        );
        assert!(r.allowed_peers().contains("12D3KooWcentral"));
    }
}
