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

use lienthong_protocol::keys::{KeyFile, KeyFileKind};
use lienthong_protocol::ledger::log_origin;
use lienthong_protocol::signed_note::{Ed25519Signer, Ed25519Verifier, is_valid_name};
use lienthong_protocol::tlog_cosignature::{Cosigner, CosignerKey};
use serde::Deserialize;

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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    pub url: String,
    /// The log's verifier key (`vkey`, Ed25519, named after the origin).
    pub log_key: String,
    /// The node's witness key (`vkey`, cosignature/v1).
    pub witness_key: String,
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
        Ok(c)
    }
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
    let err = |problem: String| ConfigError::Key {
        path: path.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "is readable by others (mode {mode:04o}); run `chmod 600` on it"
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text =
        zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?);
    let file = KeyFile::parse(&text).map_err(|e| err(e.to_string()))?;
    if file.kind != KeyFileKind::Signing {
        return Err(err("must be an ed25519-signing key".into()));
    }
    Ok(ed25519_dalek::SigningKey::from_bytes(&file.secret))
}

/// Writes a new signing key file with mode 0600, refusing to overwrite one.
///
/// # Errors
/// [`ConfigError::Key`].
pub fn write_key(
    path: &Path,
    owner: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<(), ConfigError> {
    use std::io::Write as _;
    let err = |problem: String| ConfigError::Key {
        path: path.to_path_buf(),
        problem,
    };
    let file = KeyFile::signing(
        owner,
        &lienthong_protocol::keys::SigningKey::from_seed(&key.to_bytes()),
    );
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| err(e.to_string()))?;
    f.write_all(file.to_text().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| err(e.to_string()))
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

    fn write(dir: &Path, extra: &str) -> PathBuf {
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
