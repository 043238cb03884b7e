//! Configuration: a TOML file, overridable by flags, validated at start with messages that
//! name the file, the setting and the fix.
//!
//! ```toml
//! federation = "lienthong-vn"
//! name = "central-a"                 # this central node; its log's origin is federation/name
//! listen = "0.0.0.0:7400"
//! data_dir = "/var/lib/lienthong-bootstrap"
//! log_key = "log.key"                # KeyFile (ed25519-signing), mode 0600; relative to this file
//! witness_key = "witness.key"        # a separate KeyFile for cosigning the other logs
//! checkpoint_interval_ms = 1000      # at most 1000 (DESIGN §6)
//! witness_poll_interval_ms = 1000
//! transport_key = "transport.key"    # KeyFile (ed25519-transport), 0600: the libp2p identity
//! genesis_roster = "roster.cbor"     # the signed genesis roster (k of n root signatures)
//! p2p_listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//! relay_max_reservations_per_peer = 4  # circuit relay v2 server limits (optional)
//! relay_max_circuits_per_peer = 8
//!
//! [relay]                            # custody and retry timings (optional, as the node's)
//! custody_after_ms = 5000
//! retry_base_ms = 1000
//! retry_max_ms = 600000
//!
//! [[peers]]                          # every other central node's log
//! name = "central-b"
//! url = "https://central-b.example/"  # its ledger's base URL
//! log_key = "lienthong-vn/central-b+0a1b2c3d+AQ…"          # its log vkey (keygen prints it)
//! witness_key = "lienthong-vn/central-b/witness+…+BA…"     # its witness vkey
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use lienthong_node::net::RelayLimits;
use lienthong_protocol::keys::{KeyFile, KeyFileKind};
use lienthong_protocol::ledger::log_origin;
use lienthong_protocol::roster::{RosterBook, SignedRoster};
use lienthong_protocol::signed_note::{Ed25519Signer, Ed25519Verifier, is_valid_name};
use lienthong_protocol::tlog_cosignature::{Cosigner, CosignerKey};
use serde::{Deserialize, Serialize};

use crate::log::LogConfig;
use crate::witness::PeerLog;

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
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
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: `{setting}` {problem}")]
    Invalid {
        origin: String,
        setting: String,
        problem: String,
    },
    #[error("key file {path}: {problem}")]
    Key { path: PathBuf, problem: String },
}

fn invalid(origin: &str, setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        setting: setting.to_owned(),
        problem: problem.into(),
    }
}

/// The file's shape.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub federation: String,
    pub name: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_key: PathBuf,
    pub witness_key: PathBuf,
    #[serde(default = "default_checkpoint_ms")]
    pub checkpoint_interval_ms: u64,
    #[serde(default = "default_poll_ms")]
    pub witness_poll_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    #[serde(default = "default_proof_wait_ms")]
    pub proof_wait_ms: u64,
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    #[serde(default = "default_group")]
    pub max_group: usize,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// The libp2p identity of the relay (required; `Option` only to explain its absence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_key: Option<PathBuf>,
    /// The signed genesis roster (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_roster: Option<PathBuf>,
    /// libp2p listen addresses (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p_listen: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_max_reservations_per_peer: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_max_circuits_per_peer: Option<usize>,
    /// The relay's custody and retry timings.
    #[serde(default)]
    pub relay: lienthong_node::config::RelaySection,
}

fn default_checkpoint_ms() -> u64 {
    1000
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_proof_wait_ms() -> u64 {
    3000
}
fn default_queue() -> usize {
    LogConfig::default().queue_capacity
}
fn default_group() -> usize {
    LogConfig::default().max_group
}

/// Another central node's log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    pub url: String,
    /// The log's verifier key (`vkey`, Ed25519, named after the origin).
    pub log_key: String,
    /// The node's witness key (`vkey`, cosignature/v1).
    pub witness_key: String,
}

/// The relay half of a central node: a `lienthong_node` node with no tenants (bootstrap
/// peer, custodian, circuit relay v2 server, roster gossip).
#[derive(Debug)]
pub struct RelaySetup {
    /// Seed of the libp2p Ed25519 identity.
    pub transport_seed: zeroize::Zeroizing<[u8; 32]>,
    /// The trusted genesis roster (checked: k of n of its own root keys).
    pub genesis: SignedRoster,
    /// libp2p listen addresses.
    pub listen: Vec<Multiaddr>,
    /// The circuit relay server's limits.
    pub limits: RelayLimits,
    /// Relay core tunables (custody and retry timings); defaults when `None`.
    pub relay: Option<lienthong_protocol::relay::RelayConfig>,
}

impl RelaySetup {
    /// A relay with default limits.
    #[must_use]
    pub fn new(transport_seed: [u8; 32], genesis: SignedRoster, listen: Vec<Multiaddr>) -> Self {
        Self {
            transport_seed: zeroize::Zeroizing::new(transport_seed),
            genesis,
            listen,
            limits: RelayLimits::default(),
            relay: None,
        }
    }
}

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// A validated configuration, keys loaded.
#[derive(Debug)]
pub struct Config {
    pub federation: String,
    pub name: String,
    /// `federation/name`.
    pub origin: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_signer: Ed25519Signer,
    pub cosigner: Cosigner,
    pub peers: Vec<PeerLog>,
    pub checkpoint_interval: Duration,
    pub witness_interval: Duration,
    pub request_timeout: Duration,
    pub proof_wait: Duration,
    pub log: LogConfig,
    /// The relay (always set from a file; `None` runs the ledger alone, for tests and
    /// tools: such a node has no roster in force and logs the rosters it is given).
    pub relay: Option<RelaySetup>,
}

/// The witness key name of a central node: `<origin>/witness`.
#[must_use]
pub fn witness_name(origin: &str) -> String {
    format!("{origin}/witness")
}

impl Config {
    /// A configuration with defaults, from keys in memory (tests, tools).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for bad names or identical keys.
    pub fn new(
        federation: &str,
        name: &str,
        data_dir: PathBuf,
        log_key: ed25519_dalek::SigningKey,
        witness_key: ed25519_dalek::SigningKey,
    ) -> Result<Self, ConfigError> {
        let origin = log_origin(federation, name);
        check_names(&origin, federation, name)?;
        if log_key.verifying_key() == witness_key.verifying_key() {
            return Err(invalid(
                &origin,
                "witness_key",
                "is the log key; use a separate key for cosigning (key hygiene)",
            ));
        }
        let log_signer = Ed25519Signer::new(&origin, log_key)
            .map_err(|e| invalid(&origin, "name", e.to_string()))?;
        let cosigner = Cosigner::new(&witness_name(&origin), witness_key)
            .map_err(|e| invalid(&origin, "name", e.to_string()))?;
        Ok(Self {
            federation: federation.to_owned(),
            name: name.to_owned(),
            origin,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            log_signer,
            cosigner,
            peers: Vec::new(),
            checkpoint_interval: Duration::from_millis(default_checkpoint_ms()),
            witness_interval: Duration::from_millis(default_poll_ms()),
            request_timeout: Duration::from_millis(default_timeout_ms()),
            proof_wait: Duration::from_millis(default_proof_wait_ms()),
            log: LogConfig::default(),
            relay: None,
        })
    }

    /// The log's verifier key string.
    #[must_use]
    pub fn log_vkey(&self) -> String {
        self.log_signer.verifier().to_vkey()
    }

    /// The witness's verifier key string.
    #[must_use]
    pub fn witness_vkey(&self) -> String {
        self.cosigner.public().to_vkey()
    }

    /// Adds a peer log from its name, URL and key strings, validating them.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the peer setting at fault.
    pub fn add_peer(
        &mut self,
        name: &str,
        url: &str,
        log_key: &str,
        witness_key: &str,
    ) -> Result<(), ConfigError> {
        let o = self.origin.clone();
        let at = |s: &str| format!("peers[{name}].{s}");
        if name == self.name {
            return Err(invalid(&o, &at("name"), "is this node's own name"));
        }
        if self.peers.iter().any(|p| p.name == name) {
            return Err(invalid(&o, &at("name"), "appears twice"));
        }
        let origin = log_origin(&self.federation, name);
        if !is_valid_name(&origin) {
            return Err(invalid(&o, &at("name"), "must not contain spaces or '+'"));
        }
        let mut url = reqwest::Url::parse(url)
            .map_err(|e| invalid(&o, &at("url"), format!("is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(invalid(&o, &at("url"), "must be an http or https URL"));
        }
        if !url.path().ends_with('/') {
            let p = format!("{}/", url.path());
            url.set_path(&p);
        }
        let log_key = Ed25519Verifier::from_vkey(log_key)
            .map_err(|e| invalid(&o, &at("log_key"), format!("is not an Ed25519 vkey: {e}")))?;
        if lienthong_protocol::signed_note::NoteVerifier::name(&log_key) != origin {
            return Err(invalid(
                &o,
                &at("log_key"),
                format!("must be named after the log's origin {origin:?}"),
            ));
        }
        let witness_key = CosignerKey::from_vkey(witness_key).map_err(|e| {
            invalid(
                &o,
                &at("witness_key"),
                format!("is not a cosignature/v1 vkey: {e}"),
            )
        })?;
        self.peers.push(PeerLog {
            name: name.to_owned(),
            origin,
            url,
            log_key,
            witness_key,
        });
        Ok(())
    }

    /// Reads and validates a configuration file; key paths are relative to its directory.
    ///
    /// # Errors
    /// Any [`ConfigError`], naming the file and setting.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::from_file(file, base, overrides)
    }

    /// Validates a parsed file.
    ///
    /// # Errors
    /// Any [`ConfigError`].
    pub fn from_file(
        file: FileConfig,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<Self, ConfigError> {
        let origin = log_origin(&file.federation, &file.name);
        check_names(&origin, &file.federation, &file.name)?;
        let log_key = load_key(&base.join(&file.log_key))?;
        let witness_key = load_key(&base.join(&file.witness_key))?;
        let mut c = Self::new(
            &file.federation,
            &file.name,
            base.join(overrides.data_dir.as_ref().unwrap_or(&file.data_dir)),
            log_key,
            witness_key,
        )?;
        c.listen = overrides.listen.unwrap_or(file.listen);
        if !(1..=1000).contains(&file.checkpoint_interval_ms) {
            return Err(invalid(
                &origin,
                "checkpoint_interval_ms",
                "must be 1..=1000 (a checkpoint at least every second)",
            ));
        }
        if !(1..=600_000).contains(&file.witness_poll_interval_ms) {
            return Err(invalid(
                &origin,
                "witness_poll_interval_ms",
                "must be 1..=600000",
            ));
        }
        if !(1..=600_000).contains(&file.request_timeout_ms) {
            return Err(invalid(&origin, "request_timeout_ms", "must be 1..=600000"));
        }
        if file.proof_wait_ms > 60_000 {
            return Err(invalid(&origin, "proof_wait_ms", "must be at most 60000"));
        }
        if !(1..=1_000_000).contains(&file.queue_capacity) {
            return Err(invalid(&origin, "queue_capacity", "must be 1..=1000000"));
        }
        if !(1..=65_536).contains(&file.max_group) {
            return Err(invalid(&origin, "max_group", "must be 1..=65536"));
        }
        c.checkpoint_interval = Duration::from_millis(file.checkpoint_interval_ms);
        c.witness_interval = Duration::from_millis(file.witness_poll_interval_ms);
        c.request_timeout = Duration::from_millis(file.request_timeout_ms);
        c.proof_wait = Duration::from_millis(file.proof_wait_ms);
        c.log = LogConfig {
            queue_capacity: file.queue_capacity,
            max_group: file.max_group,
        };
        for p in &file.peers {
            c.add_peer(&p.name, &p.url, &p.log_key, &p.witness_key)?;
        }
        c.relay = Some(relay_setup(&file, base, &origin)?);
        Ok(c)
    }
}

/// The relay settings, each required, with a message that tells an operator of an older
/// ledger-only configuration what to add.
fn relay_setup(file: &FileConfig, base: &Path, origin: &str) -> Result<RelaySetup, ConfigError> {
    let missing = |setting: &str, example: &str| {
        invalid(
            origin,
            setting,
            format!(
                "is missing: a central node also runs the libp2p relay and needs \
                 `transport_key` (`lienthong-bootstrap keygen` writes transport.key), \
                 `genesis_roster` (the signed genesis roster file) and `p2p_listen`; \
                 e.g. {setting} = {example}"
            ),
        )
    };
    let transport_path = base.join(
        file.transport_key
            .as_ref()
            .ok_or_else(|| missing("transport_key", "\"transport.key\""))?,
    );
    let roster_path = base.join(
        file.genesis_roster
            .as_ref()
            .ok_or_else(|| missing("genesis_roster", "\"roster.cbor\""))?,
    );
    let listen = file
        .p2p_listen
        .as_ref()
        .ok_or_else(|| missing("p2p_listen", "[\"/ip4/0.0.0.0/tcp/4001\"]"))?;
    let listen = listen
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<Multiaddr>().map_err(|e| {
                invalid(
                    origin,
                    &format!("p2p_listen[{i}]"),
                    format!("is `{a}`, not a multiaddr ({e}); e.g. /ip4/0.0.0.0/tcp/4001"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if listen.is_empty() {
        return Err(invalid(
            origin,
            "p2p_listen",
            "is empty; list at least one address, e.g. [\"/ip4/0.0.0.0/tcp/4001\"]",
        ));
    }
    let transport = load_key_of(&transport_path, KeyFileKind::Transport)?;
    let roster_err = |message: String| ConfigError::Parse {
        path: roster_path.clone(),
        message,
    };
    let bytes = std::fs::read(&roster_path).map_err(|source| ConfigError::Read {
        path: roster_path.clone(),
        source,
    })?;
    let genesis = SignedRoster::decode(&bytes)
        .map_err(|e| roster_err(format!("not a signed roster: {e}")))?;
    RosterBook::genesis(genesis.clone())
        .map_err(|e| roster_err(format!("not a trustworthy genesis roster: {e}")))?;
    let mut limits = RelayLimits::default();
    if let Some(v) = file.relay_max_reservations_per_peer {
        if !(1..=64).contains(&v) {
            return Err(invalid(
                origin,
                "relay_max_reservations_per_peer",
                "must be 1..=64",
            ));
        }
        limits.max_reservations_per_peer = v;
    }
    if let Some(v) = file.relay_max_circuits_per_peer {
        if !(1..=256).contains(&v) {
            return Err(invalid(
                origin,
                "relay_max_circuits_per_peer",
                "must be 1..=256",
            ));
        }
        limits.max_circuits_per_peer = v;
    }
    let mut timings = lienthong_protocol::relay::RelayConfig::new(String::new());
    file.relay
        .apply(&mut timings)
        .map_err(|e| invalid(origin, "relay", e.to_string()))?;
    let mut setup = RelaySetup::new(*transport, genesis, listen);
    setup.limits = limits;
    setup.relay = Some(timings);
    Ok(setup)
}

fn check_names(origin: &str, federation: &str, name: &str) -> Result<(), ConfigError> {
    if federation.is_empty() || federation.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(invalid(
            origin,
            "federation",
            "must be non-empty, without spaces or '+'",
        ));
    }
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c == '/')
    {
        return Err(invalid(
            origin,
            "name",
            "must be non-empty, without spaces, '+' or '/'",
        ));
    }
    Ok(())
}

/// Loads an Ed25519 key file, refusing one readable by group or others.
///
/// # Errors
/// [`ConfigError::Key`] naming the file and the problem.
pub fn load_key(path: &Path) -> Result<ed25519_dalek::SigningKey, ConfigError> {
    let secret = load_key_of(path, KeyFileKind::Signing)?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&secret))
}

/// Loads a key file of `kind` (its 32-byte secret), refusing one readable by others.
///
/// # Errors
/// [`ConfigError::Key`] naming the file and the problem.
pub fn load_key_of(
    path: &Path,
    kind: KeyFileKind,
) -> Result<zeroize::Zeroizing<[u8; 32]>, ConfigError> {
    use lienthong_node::config::ConfigError as NodeConfigError;
    lienthong_node::config::read_key(path, kind).map_err(|e| ConfigError::Key {
        path: path.to_path_buf(),
        problem: match e {
            NodeConfigError::Key { problem, .. } => problem,
            NodeConfigError::Read { source, .. } => source.to_string(),
            other => other.to_string(),
        },
    })
}

/// Writes a new signing key file with mode 0600, refusing to overwrite one (the node's
/// [`lienthong_node::config::write_key`]).
///
/// # Errors
/// [`ConfigError::Key`].
pub fn write_key(
    path: &Path,
    owner: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<(), ConfigError> {
    let file = KeyFile::signing(
        owner,
        &lienthong_protocol::keys::SigningKey::from_seed(&key.to_bytes()),
    );
    lienthong_node::config::write_key(path, &file).map_err(|e| ConfigError::Key {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })
}

/// A central node laid out on disk from keys in memory, as an operator would have it after
/// `keygen` and the genesis ceremony: for local federations (devnets, multi-process tests).
#[derive(Debug)]
pub struct CentralLayout<'a> {
    pub federation: &'a str,
    pub name: &'a str,
    pub log_seed: &'a [u8; 32],
    pub witness_seed: &'a [u8; 32],
    pub transport_seed: &'a [u8; 32],
    /// Where the ledger's HTTP interface listens.
    pub listen: SocketAddr,
    /// libp2p listen addresses.
    pub p2p_listen: Vec<String>,
    /// The other central nodes' logs.
    pub peers: Vec<PeerConfig>,
    /// Custody and retry timings.
    pub relay: lienthong_node::config::RelaySection,
}

impl CentralLayout<'_> {
    fn config(&self) -> Result<Config, ConfigError> {
        Config::new(
            self.federation,
            self.name,
            PathBuf::from("data"),
            ed25519_dalek::SigningKey::from_bytes(self.log_seed),
            ed25519_dalek::SigningKey::from_bytes(self.witness_seed),
        )
    }

    /// This node as the other central nodes list it in their `[[peers]]`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for bad names or identical keys.
    pub fn as_peer(&self) -> Result<PeerConfig, ConfigError> {
        let config = self.config()?;
        Ok(PeerConfig {
            name: self.name.to_owned(),
            url: format!("http://{}", self.listen),
            log_key: config.log_vkey(),
            witness_key: config.witness_vkey(),
        })
    }

    /// Writes `log.key`, `witness.key`, `transport.key` (mode 0600), `roster.cbor` and
    /// `config.toml` (data in `data/`) into `dir`; the path of `config.toml`. Key files are
    /// never overwritten: the call fails instead.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file that could not be written.
    pub fn write(&self, dir: &Path, genesis: &SignedRoster) -> Result<PathBuf, ConfigError> {
        let config = self.config()?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| ConfigError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_key(
            &dir.join("log.key"),
            &config.origin,
            &ed25519_dalek::SigningKey::from_bytes(self.log_seed),
        )?;
        write_key(
            &dir.join("witness.key"),
            &witness_name(&config.origin),
            &ed25519_dalek::SigningKey::from_bytes(self.witness_seed),
        )?;
        let transport = dir.join("transport.key");
        lienthong_node::config::write_key(
            &transport,
            &KeyFile::transport(self.name, self.transport_seed),
        )
        .map_err(|e| ConfigError::Key {
            path: transport.clone(),
            problem: e.to_string(),
        })?;
        let roster = dir.join("roster.cbor");
        let bytes = genesis.to_bytes().map_err(|e| ConfigError::Parse {
            path: roster.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&roster, bytes).map_err(io(&roster))?;
        let file = FileConfig {
            federation: self.federation.to_owned(),
            name: self.name.to_owned(),
            listen: self.listen,
            data_dir: PathBuf::from("data"),
            log_key: PathBuf::from("log.key"),
            witness_key: PathBuf::from("witness.key"),
            checkpoint_interval_ms: default_checkpoint_ms(),
            witness_poll_interval_ms: default_poll_ms(),
            request_timeout_ms: default_timeout_ms(),
            proof_wait_ms: default_proof_wait_ms(),
            queue_capacity: default_queue(),
            max_group: default_group(),
            peers: self.peers.clone(),
            transport_key: Some(PathBuf::from("transport.key")),
            genesis_roster: Some(PathBuf::from("roster.cbor")),
            p2p_listen: Some(self.p2p_listen.clone()),
            relay_max_reservations_per_peer: None,
            relay_max_circuits_per_peer: None,
            relay: self.relay.clone(),
        };
        let path = dir.join("config.toml");
        let text = toml::to_string(&file).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(io(&path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    fn setup(dir: &Path) {
        write_key(
            &dir.join("log.key"),
            "f/a",
            &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
        )
        .unwrap();
        write_key(
            &dir.join("witness.key"),
            "f/a/witness",
            &ed25519_dalek::SigningKey::from_bytes(&[2; 32]),
        )
        .unwrap();
        lienthong_node::config::write_key(
            &dir.join("transport.key"),
            &KeyFile::transport("a", &[3; 32]),
        )
        .unwrap();
        std::fs::write(dir.join("roster.cbor"), genesis(1)).unwrap();
    }

    /// A genesis roster signed by `signers` of its one root key… or by none.
    fn genesis(signers: usize) -> Vec<u8> {
        use lienthong_protocol::roster::{Federation, Roster};
        let root = lienthong_protocol::keys::SigningKey::from_seed(&[9; 32]);
        let roster = Roster {
            epoch: 1,
            issued_ms: 0,
            federation: Federation {
                name: "f".into(),
                threshold: 1,
                root_keys: vec![root.verifying_key()],
                witness_quorum: 0,
            },
            agencies: vec![],
            central: vec![],
        };
        let mut signed = SignedRoster::propose(&roster).unwrap();
        if signers > 0 {
            signed.sign(&root);
        }
        signed.to_bytes().unwrap()
    }

    fn peer_keys() -> (String, String) {
        let b = Config::new(
            "f",
            "b",
            PathBuf::new(),
            ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
            ed25519_dalek::SigningKey::from_bytes(&[4; 32]),
        )
        .unwrap();
        (b.log_vkey(), b.witness_vkey())
    }

    const RELAY: &str = "transport_key = \"transport.key\"\ngenesis_roster = \"roster.cbor\"\n\
                         p2p_listen = [\"/ip4/127.0.0.1/tcp/0\"]\n";

    fn write(dir: &Path, extra: &str) -> PathBuf {
        write_with(dir, &format!("{RELAY}{extra}"))
    }

    fn write_with(dir: &Path, extra: &str) -> PathBuf {
        let (log, witness) = peer_keys();
        let text = format!(
            "federation = \"f\"\nname = \"a\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
             log_key = \"log.key\"\nwitness_key = \"witness.key\"\n{extra}\n\
             [[peers]]\nname = \"b\"\nurl = \"http://127.0.0.1:9/ledger\"\n\
             log_key = \"{log}\"\nwitness_key = \"{witness}\"\n"
        );
        let p = dir.join("c.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn loads_a_valid_file_and_names_bad_settings() {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let c = Config::load(&write(dir.path(), ""), &Overrides::default()).unwrap();
        assert_eq!(c.origin, "f/a");
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.peers.len(), 1);
        assert_eq!(c.peers[0].origin, "f/b");
        assert_eq!(c.peers[0].url.as_str(), "http://127.0.0.1:9/ledger/");
        assert_eq!(c.checkpoint_interval, Duration::from_secs(1));

        let err = Config::load(
            &write(dir.path(), "checkpoint_interval_ms = 5000"),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("checkpoint_interval_ms"), "{err}");
        let err = Config::load(&write(dir.path(), "colour = 1"), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn the_relay_settings_are_required_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let c = Config::load(&write(dir.path(), ""), &Overrides::default()).unwrap();
        let relay = c.relay.unwrap();
        assert_eq!(relay.listen.len(), 1);
        assert_eq!(relay.limits.max_reservations_per_peer, 4);

        // An older ledger-only configuration is told what to add.
        let err = Config::load(&write_with(dir.path(), ""), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`transport_key` is missing") && err.contains("keygen"),
            "{err}"
        );
        let err = Config::load(
            &write_with(dir.path(), "transport_key = \"transport.key\""),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`genesis_roster` is missing"), "{err}");

        // A genesis roster short of its threshold is refused, naming the file.
        std::fs::write(dir.path().join("roster.cbor"), genesis(0)).unwrap();
        let err = Config::load(&write(dir.path(), ""), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("roster.cbor") && err.contains("0 valid root signatures"),
            "{err}"
        );
        std::fs::write(dir.path().join("roster.cbor"), genesis(1)).unwrap();
        // The transport key must be a transport key.
        let err = Config::load(
            &write_with(
                dir.path(),
                "transport_key = \"log.key\"\ngenesis_roster = \"roster.cbor\"\n\
                 p2p_listen = [\"/ip4/127.0.0.1/tcp/0\"]",
            ),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("log.key") && err.contains("ed25519-transport"),
            "{err}"
        );
        let err = Config::load(
            &write(dir.path(), "relay_max_circuits_per_peer = 0"),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("relay_max_circuits_per_peer"), "{err}");
    }

    #[test]
    fn refuses_readable_key_files_and_shared_keys() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let mode = std::fs::metadata(dir.path().join("log.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(
            dir.path().join("log.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let err = Config::load(&write(dir.path(), ""), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
        let k = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let err = Config::new("f", "a", PathBuf::new(), k.clone(), k)
            .unwrap_err()
            .to_string();
        assert!(err.contains("separate key"), "{err}");
        assert!(
            write_key(
                &dir.path().join("witness.key"),
                "x",
                &ed25519_dalek::SigningKey::from_bytes(&[6; 32])
            )
            .is_err(),
            "never overwrites a key"
        );
    }
}
