//! Roster ceremonies (DESIGN §3): how the central office's key holders create the genesis
//! roster and every later epoch, k of n, with files passed from hand to hand.
//!
//! ```text
//! holder 1..n   root-keygen            → root-<i>.key (0600), prints the public key
//! operators     lienthong init         → member.json (agency nodes)
//!               lienthong-bootstrap keygen → central.json (central nodes)
//! office        genesis | propose      → proposal.cbor (unsigned, epoch + 1)
//! holder i      sign --key root-i.key  → proposal.cbor (one more signature, in place)
//! anyone        show proposal.cbor     → epoch, changes, signatures valid / needed
//! office        publish --url …        → a central node verifies k of n against the
//!                                        roster in force, applies it and gossips it
//! ```
//!
//! Proposals and rosters are [`SignedRoster`] files (deterministic CBOR). Nothing here
//! trusts a file: every roster read is decoded canonically and validated, signatures are
//! checked against the roster that must trust them, and errors name the file and the
//! problem. The CLI (`lienthong-bootstrap roster …`) is a thin layer over these functions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lienthong_node::federation::MemberRequest;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{KeyFile, SigningKey, VerifyingKey};
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, MAX_ROSTER_LEN, Roster, SignedRoster,
};
use serde::{Deserialize, Serialize};

use crate::config::load_key;

/// A ceremony step that could not be done, naming the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{path}: key {key} is not a root key of the roster that must trust this proposal (epoch {epoch}); its root keys are {known}"
    )]
    NotRootKey {
        path: PathBuf,
        key: String,
        epoch: u64,
        known: String,
    },
    #[error("publishing to {url}: {problem}")]
    Publish { url: String, problem: String },
}

fn file_err(path: &Path, problem: impl std::fmt::Display) -> CeremonyError {
    CeremonyError::File {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

/// What a central node's operator hands to the central office (written by
/// `lienthong-bootstrap keygen` as `central.json`): the roster's [`CentralNode`] entry, keys
/// in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralRequest {
    /// The node's name (its log's origin is `federation/name`).
    pub name: String,
    /// libp2p peer id of its transport key.
    pub peer_id: String,
    /// Its public libp2p addresses (multiaddrs).
    pub addrs: Vec<String>,
    /// Its log (checkpoint) key: Ed25519 public key, base64.
    pub log_key: String,
    /// Base URL of its HTTP interface.
    pub http_url: String,
}

impl CentralRequest {
    /// The roster entry it asks for.
    ///
    /// # Errors
    /// [`CeremonyError::Invalid`] naming the field.
    pub fn to_node(&self) -> Result<CentralNode, CeremonyError> {
        let bad = |field: &str, problem: &str| {
            CeremonyError::Invalid(format!("central {}: `{field}` {problem}", self.name))
        };
        let log_key = decode_key(&self.log_key)
            .ok_or_else(|| bad("log_key", "must be a 32-byte Ed25519 public key in base64"))?;
        if self.peer_id.parse::<libp2p::PeerId>().is_err() {
            return Err(bad("peer_id", "is not a libp2p peer id"));
        }
        for a in &self.addrs {
            if a.parse::<libp2p::Multiaddr>().is_err() {
                return Err(bad("addrs", &format!("has `{a}`, not a multiaddr")));
            }
        }
        if reqwest::Url::parse(&self.http_url)
            .map(|u| !matches!(u.scheme(), "http" | "https"))
            .unwrap_or(true)
        {
            return Err(bad("http_url", "must be an http or https URL"));
        }
        Ok(CentralNode {
            name: self.name.clone(),
            peer_id: self.peer_id.clone(),
            addrs: self.addrs.clone(),
            log_key,
            http_url: self.http_url.clone(),
        })
    }
}

/// A 32-byte key from base64.
#[must_use]
pub fn decode_key(b64: &str) -> Option<VerifyingKey> {
    B64.decode(b64.trim().as_bytes())
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .map(VerifyingKey)
}

/// A key's base64 form (what `root-keygen` prints and `genesis --root-pub` takes).
#[must_use]
pub fn encode_key(key: &VerifyingKey) -> String {
    B64.encode(key.0)
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so a reader never
/// sees half a roster.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CeremonyError> {
    use std::io::Write as _;
    let err = |source| CeremonyError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map_or_else(|| "roster".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Creates a root key file (`ed25519-signing`, mode 0600, never overwriting) for one key
/// holder; returns its public key.
///
/// # Errors
/// [`CeremonyError::Write`] (e.g. the file exists).
pub fn root_keygen(out: &Path, holder: &str) -> Result<VerifyingKey, CeremonyError> {
    let key = SigningKey::generate(&mut rand_core::OsRng);
    lienthong_node::config::write_key(out, &KeyFile::signing(holder, &key)).map_err(|source| {
        CeremonyError::Write {
            path: out.to_path_buf(),
            source,
        }
    })?;
    Ok(key.verifying_key())
}

/// Loads a root key file (0600, `ed25519-signing`).
///
/// # Errors
/// [`CeremonyError::File`] naming the file.
pub fn load_root_key(path: &Path) -> Result<SigningKey, CeremonyError> {
    let key = load_key(path).map_err(|e| CeremonyError::Invalid(e.to_string()))?;
    Ok(SigningKey::from_seed(&key.to_bytes()))
}

/// Reads a signed roster or proposal file.
///
/// # Errors
/// [`CeremonyError::Read`] or [`CeremonyError::File`] naming the file.
pub fn read_roster(path: &Path) -> Result<(SignedRoster, Roster), CeremonyError> {
    let meta = std::fs::metadata(path).map_err(|source| CeremonyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_ROSTER_LEN as u64 {
        return Err(file_err(
            path,
            format!("{} bytes; a roster is at most {MAX_ROSTER_LEN}", meta.len()),
        ));
    }
    let bytes = std::fs::read(path).map_err(|source| CeremonyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let signed = SignedRoster::decode(&bytes)
        .map_err(|e| file_err(path, format!("not a signed roster: {e}")))?;
    let roster = signed
        .roster()
        .map_err(|e| file_err(path, format!("invalid roster: {e}")))?;
    Ok((signed, roster))
}

/// Writes a signed roster or proposal file.
///
/// # Errors
/// [`CeremonyError::Write`].
pub fn write_roster(path: &Path, signed: &SignedRoster) -> Result<(), CeremonyError> {
    let bytes = signed
        .to_bytes()
        .map_err(|e| CeremonyError::Invalid(e.to_string()))?;
    write_atomic(path, &bytes)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CeremonyError> {
    let text = std::fs::read_to_string(path).map_err(|source| CeremonyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| file_err(path, e))
}

/// Reads a member request file from `lienthong init`: one request or a list (a node
/// hosting several agencies).
///
/// # Errors
/// [`CeremonyError::File`] naming the file and the bad field.
pub fn read_members(path: &Path) -> Result<Vec<AgencyEntry>, CeremonyError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<MemberRequest>),
        One(MemberRequest),
    }
    let requests = match read_json::<OneOrMany>(path)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(r) => vec![r],
    };
    requests
        .iter()
        .map(|r| {
            let entry = r.to_entry().map_err(|e| file_err(path, e))?;
            if entry.node.parse::<libp2p::PeerId>().is_err() {
                return Err(file_err(
                    path,
                    format!("member {}: `node` is not a libp2p peer id", r.id),
                ));
            }
            Ok(entry)
        })
        .collect()
}

/// Reads a central node descriptor (`central.json` from `keygen`).
///
/// # Errors
/// [`CeremonyError::File`] naming the file and the bad field.
pub fn read_central(path: &Path) -> Result<CentralNode, CeremonyError> {
    read_json::<CentralRequest>(path)?
        .to_node()
        .map_err(|e| file_err(path, e))
}

/// What the genesis roster is made of.
#[derive(Debug, Clone)]
pub struct GenesisSpec {
    pub federation: String,
    /// k.
    pub threshold: u8,
    /// The n root keys.
    pub root_keys: Vec<VerifyingKey>,
    pub members: Vec<AgencyEntry>,
    pub central: Vec<CentralNode>,
    /// Cosignatures a checkpoint needs; by default all other central nodes but one (at
    /// least one when there are two or more).
    pub witness_quorum: Option<u8>,
    pub issued_ms: u64,
}

/// The default witness quorum for `central` nodes.
#[must_use]
pub fn default_witness_quorum(central: usize) -> u8 {
    let q = u8::try_from(central.saturating_sub(2)).unwrap_or(u8::MAX);
    q.max(u8::from(central >= 2))
}

/// An unsigned genesis proposal (epoch 1).
///
/// # Errors
/// [`CeremonyError::Invalid`] with the roster rule broken.
pub fn genesis(spec: GenesisSpec) -> Result<SignedRoster, CeremonyError> {
    let mut agencies = spec.members;
    agencies.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some([a, _]) = agencies
        .windows(2)
        .find(|w| matches!(w, [a, b] if a.id == b.id))
    {
        return Err(CeremonyError::Invalid(format!(
            "agency {} is listed twice",
            a.id
        )));
    }
    let mut central = spec.central;
    central.sort_by(|a, b| a.name.cmp(&b.name));
    let roster = Roster {
        epoch: 1,
        issued_ms: spec.issued_ms,
        federation: Federation {
            name: spec.federation,
            threshold: spec.threshold,
            witness_quorum: spec
                .witness_quorum
                .unwrap_or_else(|| default_witness_quorum(central.len())),
            root_keys: spec.root_keys,
        },
        agencies,
        central,
    };
    SignedRoster::propose(&roster).map_err(|e| CeremonyError::Invalid(e.to_string()))
}

/// One change of a proposal.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new member (active).
    Admit(AgencyEntry),
    /// New keys, node or addresses for an existing member (its state is kept).
    Rotate(AgencyEntry),
    Suspend(AgencyId),
    /// Suspended back to active.
    Reinstate(AgencyId),
    Revoke(AgencyId),
    /// `old` is succeeded by `new` (already a member).
    Succeed {
        old: AgencyId,
        new: AgencyId,
    },
    AddCentral(CentralNode),
    RemoveCentral(String),
}

fn state_name(s: &AgencyState) -> String {
    match s {
        AgencyState::Active => "active".into(),
        AgencyState::Suspended => "suspended".into(),
        AgencyState::Revoked => "revoked".into(),
        AgencyState::SucceededBy(n) => format!("succeeded by {n}"),
    }
}

fn apply_change(r: &mut Roster, change: Change) -> Result<(), CeremonyError> {
    let bad = |m: String| Err(CeremonyError::Invalid(m));
    let find = |r: &mut Roster, id: &AgencyId| -> Result<usize, CeremonyError> {
        r.agencies
            .binary_search_by(|a| a.id.cmp(id))
            .map_err(|_| CeremonyError::Invalid(format!("agency {id} is not in the roster")))
    };
    match change {
        Change::Admit(entry) => match r.agencies.binary_search_by(|a| a.id.cmp(&entry.id)) {
            Ok(_) => return bad(format!("agency {} is already a member", entry.id)),
            Err(at) => r.agencies.insert(at, entry),
        },
        Change::Rotate(entry) => {
            let at = find(r, &entry.id)?;
            if let Some(old) = r.agencies.get_mut(at) {
                if matches!(
                    old.state,
                    AgencyState::Revoked | AgencyState::SucceededBy(_)
                ) {
                    return bad(format!(
                        "agency {} is {}; its keys cannot be rotated",
                        old.id,
                        state_name(&old.state)
                    ));
                }
                let state = old.state.clone();
                *old = AgencyEntry { state, ..entry };
            }
        }
        Change::Suspend(_) | Change::Reinstate(_) | Change::Revoke(_) => set_state(r, &change)?,
        Change::Succeed { old, new } => {
            if old == new {
                return bad(format!("agency {old} cannot succeed itself"));
            }
            let successor = find(r, &new)?;
            if r.agencies
                .get(successor)
                .is_some_and(|a| a.state != AgencyState::Active)
            {
                return bad(format!("the successor {new} is not active"));
            }
            let at = find(r, &old)?;
            if let Some(a) = r.agencies.get_mut(at) {
                if a.state == AgencyState::Revoked {
                    return bad(format!("agency {old} is revoked"));
                }
                a.state = AgencyState::SucceededBy(new);
            }
        }
        Change::AddCentral(node) => match r.central.binary_search_by(|c| c.name.cmp(&node.name)) {
            Ok(_) => return bad(format!("central node {} is already listed", node.name)),
            Err(at) => r.central.insert(at, node),
        },
        Change::RemoveCentral(name) => {
            let at = r
                .central
                .binary_search_by(|c| c.name.cmp(&name))
                .map_err(|_| CeremonyError::Invalid(format!("no central node named {name}")))?;
            r.central.remove(at);
            let most = u8::try_from(r.central.len().saturating_sub(1)).unwrap_or(u8::MAX);
            r.federation.witness_quorum = r.federation.witness_quorum.min(most);
        }
    }
    Ok(())
}

fn set_state(r: &mut Roster, change: &Change) -> Result<(), CeremonyError> {
    let (id, from, to): (&AgencyId, &[AgencyState], AgencyState) = match change {
        Change::Suspend(id) => (id, &[AgencyState::Active], AgencyState::Suspended),
        Change::Reinstate(id) => (id, &[AgencyState::Suspended], AgencyState::Active),
        Change::Revoke(id) => (
            id,
            &[AgencyState::Active, AgencyState::Suspended],
            AgencyState::Revoked,
        ),
        _ => return Ok(()),
    };
    let entry = r
        .agencies
        .iter_mut()
        .find(|a| &a.id == id)
        .ok_or_else(|| CeremonyError::Invalid(format!("agency {id} is not in the roster")))?;
    if !from.contains(&entry.state) {
        return Err(CeremonyError::Invalid(format!(
            "agency {id} is {}; it cannot become {}",
            state_name(&entry.state),
            state_name(&to)
        )));
    }
    entry.state = to;
    Ok(())
}

/// An unsigned proposal for the epoch after `current`, issued at `issued_ms`, with
/// `changes` applied in order.
///
/// # Errors
/// [`CeremonyError::Invalid`] naming the change or the roster rule broken.
pub fn propose(
    current: &Roster,
    changes: Vec<Change>,
    issued_ms: u64,
) -> Result<SignedRoster, CeremonyError> {
    if changes.is_empty() {
        return Err(CeremonyError::Invalid(
            "a proposal needs at least one change".into(),
        ));
    }
    let mut next = current.clone();
    next.epoch = current
        .epoch
        .checked_add(1)
        .ok_or_else(|| CeremonyError::Invalid("the epoch cannot grow further".into()))?;
    next.issued_ms = issued_ms.max(current.issued_ms);
    for change in changes {
        apply_change(&mut next, change)?;
    }
    SignedRoster::propose(&next).map_err(|e| CeremonyError::Invalid(e.to_string()))
}

/// Signs `proposal` with `key`, which must be a root key of `trusted` (the roster in
/// force, or for a genesis the proposal itself).
///
/// # Errors
/// [`CeremonyError::NotRootKey`] naming `key_path`.
pub fn sign(
    proposal: &mut SignedRoster,
    key: &SigningKey,
    key_path: &Path,
    trusted: &Roster,
) -> Result<(), CeremonyError> {
    let public = key.verifying_key();
    if !trusted.federation.root_keys.contains(&public) {
        return Err(CeremonyError::NotRootKey {
            path: key_path.to_path_buf(),
            key: encode_key(&public),
            epoch: trusted.epoch,
            known: trusted
                .federation
                .root_keys
                .iter()
                .map(encode_key)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    proposal.sign(key);
    Ok(())
}

/// The roster that must trust `proposal`: `current` if given (its epoch must be older),
/// else the proposal itself (a genesis, or an epoch that keeps the root keys).
///
/// # Errors
/// [`CeremonyError::Invalid`] if `current` is not older.
pub fn trusting<'a>(
    proposal: &'a Roster,
    current: Option<&'a Roster>,
) -> Result<&'a Roster, CeremonyError> {
    match current {
        Some(c) if c.epoch >= proposal.epoch => Err(CeremonyError::Invalid(format!(
            "the proposal's epoch {} is not newer than the roster in force (epoch {})",
            proposal.epoch, c.epoch
        ))),
        Some(c) => Ok(c),
        None => Ok(proposal),
    }
}

/// Signatures on a proposal, as counted against a trusting roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureCount {
    /// Valid signatures by distinct root keys of the trusting roster.
    pub valid: usize,
    /// k.
    pub needed: u8,
    /// Signatures by keys that are not root keys there, or that do not verify.
    pub invalid: usize,
    /// The epoch of the trusting roster.
    pub against_epoch: u64,
}

/// Counts `signed`'s signatures against `trusted`'s root keys.
#[must_use]
pub fn count_signatures(signed: &SignedRoster, trusted: &Roster) -> SignatureCount {
    let mut valid = BTreeSet::new();
    let mut invalid = 0;
    for s in &signed.sigs {
        if trusted.federation.root_keys.contains(&s.key)
            && s.key
                .verify(
                    lienthong_protocol::keys::SignatureDomain::Roster,
                    &signed.roster,
                    &s.sig,
                )
                .is_ok()
        {
            valid.insert(s.key);
        } else {
            invalid += 1;
        }
    }
    SignatureCount {
        valid: valid.len(),
        needed: trusted.federation.threshold,
        invalid,
        against_epoch: trusted.epoch,
    }
}

/// A roster summary for `roster show --json`.
#[derive(Debug, Clone, Serialize)]
pub struct RosterSummary {
    pub federation: String,
    pub epoch: u64,
    pub issued_ms: u64,
    pub threshold: u8,
    pub root_keys: Vec<String>,
    pub witness_quorum: u8,
    pub signatures: SignatureCount,
    pub agencies: Vec<AgencySummary>,
    pub central: Vec<CentralRequest>,
}

/// One agency in a [`RosterSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct AgencySummary {
    pub id: String,
    pub name: String,
    pub level: u8,
    pub state: String,
    pub node: String,
    pub signing_key: String,
}

/// Summarises `signed` with its signatures counted against `trusted`.
#[must_use]
pub fn summary(signed: &SignedRoster, roster: &Roster, trusted: &Roster) -> RosterSummary {
    RosterSummary {
        federation: roster.federation.name.clone(),
        epoch: roster.epoch,
        issued_ms: roster.issued_ms,
        threshold: roster.federation.threshold,
        root_keys: roster.federation.root_keys.iter().map(encode_key).collect(),
        witness_quorum: roster.federation.witness_quorum,
        signatures: count_signatures(signed, trusted),
        agencies: roster
            .agencies
            .iter()
            .map(|a| AgencySummary {
                id: a.id.to_string(),
                name: a.name.clone(),
                level: a.level,
                state: state_name(&a.state),
                node: a.node.clone(),
                signing_key: encode_key(&a.signing_key),
            })
            .collect(),
        central: roster
            .central
            .iter()
            .map(|c| CentralRequest {
                name: c.name.clone(),
                peer_id: c.peer_id.clone(),
                addrs: c.addrs.clone(),
                log_key: encode_key(&c.log_key),
                http_url: c.http_url.clone(),
            })
            .collect(),
    }
}

impl std::fmt::Display for RosterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.signatures;
        writeln!(f, "federation  {}", self.federation)?;
        writeln!(f, "epoch       {}", self.epoch)?;
        writeln!(f, "issued_ms   {}", self.issued_ms)?;
        writeln!(
            f,
            "signatures  {} valid of {} needed (against epoch {}){}{}",
            s.valid,
            s.needed,
            s.against_epoch,
            if s.invalid > 0 {
                format!(", {} invalid", s.invalid)
            } else {
                String::new()
            },
            if s.valid >= usize::from(s.needed) && s.invalid == 0 {
                "  [complete]"
            } else {
                "  [incomplete]"
            }
        )?;
        writeln!(
            f,
            "root keys   {} (k = {}), witness quorum {}",
            self.root_keys.len(),
            self.threshold,
            self.witness_quorum
        )?;
        for k in &self.root_keys {
            writeln!(f, "  {k}")?;
        }
        writeln!(f, "agencies    {}", self.agencies.len())?;
        for a in &self.agencies {
            writeln!(
                f,
                "  {:<16} {:<18} L{} {:<52} {}",
                a.id, a.state, a.level, a.node, a.name
            )?;
        }
        writeln!(f, "central     {}", self.central.len())?;
        for c in &self.central {
            writeln!(f, "  {:<16} {:<52} {}", c.name, c.peer_id, c.http_url)?;
        }
        Ok(())
    }
}

/// How long publishing a roster may take: the node logs it and waits for its checkpoint.
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Longest answer read from `POST /roster` (a small JSON receipt or problem).
const MAX_PUBLISH_ANSWER: usize = 64 * 1024;

/// Sends a signed roster to a central node's `POST /roster`. The node verifies k of n
/// against the roster in force, applies it (gossiping it to the federation) and logs it;
/// a refusal comes back as the node's problem detail.
///
/// # Errors
/// [`CeremonyError::Publish`] with the node's answer.
pub async fn publish(
    url: &str,
    signed: &SignedRoster,
) -> Result<crate::http::AddResponse, CeremonyError> {
    let err = |problem: String| CeremonyError::Publish {
        url: url.to_owned(),
        problem,
    };
    let mut endpoint = reqwest::Url::parse(url).map_err(|e| err(format!("not a URL: {e}")))?;
    if !endpoint.path().ends_with('/') {
        let p = format!("{}/", endpoint.path());
        endpoint.set_path(&p);
    }
    let endpoint = endpoint
        .join("roster")
        .map_err(|e| err(format!("not a URL: {e}")))?;
    let body = signed.to_bytes().map_err(|e| err(e.to_string()))?;
    let resp = reqwest::Client::builder()
        .timeout(PUBLISH_TIMEOUT)
        .build()
        .map_err(|e| err(e.to_string()))?
        .post(endpoint)
        .header("content-type", "application/cbor")
        .body(body)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    let bytes = lienthong_node::http_body::read_limited(resp, MAX_PUBLISH_ANSWER)
        .await
        .map_err(|e| err(e.to_string()))?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
            .unwrap_or(text);
        return Err(err(format!("refused ({status}): {detail}")));
    }
    serde_json::from_str(&text).map_err(|e| err(format!("unreadable answer: {e}")))
}
