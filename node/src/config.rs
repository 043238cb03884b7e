//! The node's configuration: one TOML file, overridable by `LIENTHONG_*` environment
//! variables and flags, validated at start with messages that name the setting and the
//! expected form. Key files and the roster are read here, so a node that starts has
//! everything it needs.
//!
//! ```toml
//! data_dir = "data"                       # relative paths resolve against this file's folder
//! genesis_roster = "roster.cbor"          # the trusted genesis roster (signed, CBOR)
//! transport_key = "keys/transport.key"    # KeyFile (ed25519-transport), mode 0600
//!
//! [network]
//! listen = ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"]
//! bootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/12D3KooW…"]   # optional extra peers to dial
//!
//! [api]
//! listen = "127.0.0.1:8080"               # loopback unless a DMS on another host needs it
//! tls_cert = "api.crt"                    # optional: HTTPS (PEM chain, leaf first) …
//! tls_key = "api.key"                     # … and its PEM private key, mode 0600
//!
//! [[tenants]]
//! id = "000.00.00.H41"
//! signing_key = "keys/000.00.00.H41.signing.key"
//! encryption_key = "keys/000.00.00.H41.encryption.key"
//! token_sha256 = ["9f86d0…"]               # SHA-256 (hex) of each bearer token the DMS uses
//!
//! [relay]                                 # optional tunables
//! custody_after_ms = 5000
//! retry_base_ms = 1000
//! retry_max_ms = 600000
//!
//! [hub_compat]                            # optional: the national hub SDK's protocol
//! listen = "127.0.0.1:8090"
//! [[hub_compat.systems]]
//! systemid = "dms-h41"                    # XroadVnpt-systemid of the connected DMS
//! secret_file = "keys/dms-h41.secret"     # its shared HMAC secret, mode 0600
//! tenants = ["000.00.00.H41"]             # the hosted agencies it may act for
//! ```
//!
//! Environment overrides: `LIENTHONG_DATA_DIR`, `LIENTHONG_API_LISTEN`, `LIENTHONG_LISTEN`
//! (comma-separated multiaddrs), `LIENTHONG_BOOTSTRAP` (comma-separated).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{EncryptionSecret, KeyFile, KeyFileKind, SigningKey};
use lienthong_protocol::relay::RelayConfig;
use lienthong_protocol::roster::SignedRoster;
use serde::{Deserialize, Serialize};

use crate::federation::transport_keypair;
use crate::net::NetConfig;
use crate::node::{NodeSetup, TenantKeys};

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
    #[error("`{setting}` {problem}")]
    Invalid { setting: String, problem: String },
    #[error("key file {path}: {problem}")]
    Key { path: PathBuf, problem: String },
}

fn invalid(setting: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// The file's shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: PathBuf,
    pub genesis_roster: PathBuf,
    pub transport_key: PathBuf,
    #[serde(default)]
    pub network: NetworkSection,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub tenants: Vec<TenantSection>,
    #[serde(default)]
    pub relay: RelaySection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_compat: Option<HubCompatSection>,
}

/// `[hub_compat]`: the optional listener that speaks the national hub SDK's protocol
/// ([`crate::hub_compat`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubCompatSection {
    /// Its own address and port (not the API's).
    pub listen: String,
    /// The connected systems (DMSs).
    #[serde(default)]
    pub systems: Vec<HubSystemSection>,
    /// PEM certificate chain: serve HTTPS (with `tls_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

/// One `[[hub_compat.systems]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSystemSection {
    /// The `XroadVnpt-systemid` the DMS sends.
    pub systemid: String,
    /// File holding the shared secret (UTF-8, surrounding whitespace ignored), mode 0600.
    pub secret_file: PathBuf,
    /// The hosted agencies this system may act for.
    pub tenants: Vec<String>,
}

/// `[network]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    pub listen: String,
    /// PEM certificate chain: serve HTTPS (with `tls_key`), for a DMS on another host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// One `[[tenants]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    pub id: String,
    pub signing_key: PathBuf,
    pub encryption_key: PathBuf,
    #[serde(default)]
    pub token_sha256: Vec<String>,
}

/// `[relay]`: tunables, each optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelaySection {
    pub custody_after_ms: Option<u64>,
    pub retry_base_ms: Option<u64>,
    pub retry_max_ms: Option<u64>,
}

impl RelaySection {
    /// Sets the tunables given in the file on `relay`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when `retry_max_ms` is below `retry_base_ms`.
    pub fn apply(&self, relay: &mut RelayConfig) -> Result<(), ConfigError> {
        if let Some(v) = self.custody_after_ms {
            relay.custody_after_ms = v;
        }
        if let Some(v) = self.retry_base_ms {
            relay.retry_base_ms = v.max(1);
        }
        if let Some(v) = self.retry_max_ms {
            if v < relay.retry_base_ms {
                return Err(invalid(
                    "relay.retry_max_ms",
                    "must be at least relay.retry_base_ms",
                ));
            }
            relay.retry_max_ms = v;
        }
        Ok(())
    }
}

/// Overrides from flags and the environment (flags win).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub api_listen: Option<String>,
    pub listen: Option<Vec<String>>,
    pub bootstrap: Option<Vec<String>>,
}

impl Overrides {
    /// `LIENTHONG_*` variables, under any overrides already set.
    pub fn with_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let list = |v: String| v.split(',').map(|s| s.trim().to_owned()).collect();
        self.data_dir = self
            .data_dir
            .or_else(|| var("LIENTHONG_DATA_DIR").map(PathBuf::from));
        self.api_listen = self.api_listen.or_else(|| var("LIENTHONG_API_LISTEN"));
        self.listen = self.listen.or_else(|| var("LIENTHONG_LISTEN").map(list));
        self.bootstrap = self
            .bootstrap
            .or_else(|| var("LIENTHONG_BOOTSTRAP").map(list));
        self
    }
}

/// One tenant's API bearer-token hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTokens {
    pub tenant: AgencyId,
    pub sha256: Vec<[u8; 32]>,
}

/// A validated configuration, with keys and roster loaded.
#[derive(Debug)]
pub struct Config {
    /// The node's setup (store, keys, roster, network, relay).
    pub setup: NodeSetup,
    /// Where the HTTP API listens.
    pub api_listen: SocketAddr,
    /// HTTPS for the API (`api.tls_cert`, `api.tls_key`), if configured.
    pub api_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Bearer-token hashes per tenant.
    pub tokens: Vec<TenantTokens>,
    /// The hub-compatible listener, when `[hub_compat]` is configured.
    pub hub_compat: Option<crate::hub_compat::HubConfig>,
}

impl Config {
    /// Reads, overrides and validates the file at `path`.
    pub fn load(path: &Path, overrides: Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(v) = overrides.data_dir {
            file.data_dir = v;
        }
        if let Some(v) = overrides.api_listen {
            file.api.listen = v;
        }
        if let Some(v) = overrides.listen {
            file.network.listen = v;
        }
        if let Some(v) = overrides.bootstrap {
            file.network.bootstrap = v;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_file(file, base)
    }

    /// Validates `file`, resolving relative paths against `base`.
    pub fn from_file(file: FileConfig, base: &Path) -> Result<Self, ConfigError> {
        let resolve = |p: &Path| -> PathBuf {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let api_listen: SocketAddr = file.api.listen.parse().map_err(|_| {
            invalid(
                "api.listen",
                format!(
                    "is `{}`; expected an address and port such as 127.0.0.1:8080",
                    file.api.listen
                ),
            )
        })?;
        let api_tls = tls_config(
            "api",
            file.api.tls_cert.as_deref(),
            file.api.tls_key.as_deref(),
            &resolve,
        )?;
        let multiaddrs = |setting: &str, list: &[String]| -> Result<Vec<Multiaddr>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, s)| {
                    s.parse::<Multiaddr>().map_err(|e| {
                        invalid(
                            format!("{setting}[{i}]"),
                            format!("is `{s}`, not a multiaddr ({e}); e.g. /ip4/0.0.0.0/tcp/4001"),
                        )
                    })
                })
                .collect()
        };
        let listen = multiaddrs("network.listen", &file.network.listen)?;
        if listen.is_empty() {
            return Err(invalid(
                "network.listen",
                "is empty; list at least one address, e.g. [\"/ip4/0.0.0.0/tcp/4001\"]",
            ));
        }
        let bootstrap = multiaddrs("network.bootstrap", &file.network.bootstrap)?;

        let transport_path = resolve(&file.transport_key);
        let transport = read_key(&transport_path, KeyFileKind::Transport)?;
        let roster_path = resolve(&file.genesis_roster);
        let roster_bytes = std::fs::read(&roster_path).map_err(|source| ConfigError::Read {
            path: roster_path.clone(),
            source,
        })?;
        let genesis = SignedRoster::decode(&roster_bytes).map_err(|e| ConfigError::Parse {
            path: roster_path.clone(),
            message: format!("not a signed roster: {e}"),
        })?;

        let mut tenants = Vec::with_capacity(file.tenants.len());
        let mut tokens = Vec::with_capacity(file.tenants.len());
        for (i, t) in file.tenants.iter().enumerate() {
            let id = AgencyId::parse(&t.id).map_err(|e| {
                invalid(
                    format!("tenants[{i}].id"),
                    format!(
                        "is `{}`: {e}; expected an agency code like 000.00.00.H41",
                        t.id
                    ),
                )
            })?;
            if tenants.iter().any(|k: &TenantKeys| k.id == id) {
                return Err(invalid(
                    format!("tenants[{i}].id"),
                    format!("{id} is listed twice"),
                ));
            }
            let signing = read_key(&resolve(&t.signing_key), KeyFileKind::Signing)?;
            let encryption = read_key(&resolve(&t.encryption_key), KeyFileKind::Encryption)?;
            let mut hashes = Vec::with_capacity(t.token_sha256.len());
            for (j, h) in t.token_sha256.iter().enumerate() {
                hashes.push(parse_sha256(h).ok_or_else(|| {
                    invalid(
                        format!("tenants[{i}].token_sha256[{j}]"),
                        "must be 64 hexadecimal digits (the SHA-256 of a bearer token)",
                    )
                })?);
            }
            tokens.push(TenantTokens {
                tenant: id.clone(),
                sha256: hashes,
            });
            tenants.push(TenantKeys {
                id,
                signing: SigningKey::from_seed(&signing),
                encryption: EncryptionSecret::from_bytes(&encryption),
            });
        }

        let keypair = transport_keypair(&transport).map_err(|e| ConfigError::Key {
            path: transport_path.clone(),
            problem: e.to_string(),
        })?;
        let mut relay = RelayConfig::new(keypair.public().to_peer_id().to_string());
        file.relay.apply(&mut relay)?;
        let hub_compat = file
            .hub_compat
            .as_ref()
            .map(|section| hub_compat_config(section, &tenants, &resolve))
            .transpose()?;
        Ok(Self {
            setup: NodeSetup {
                data_dir: resolve(&file.data_dir),
                transport: keypair,
                tenants,
                genesis,
                net: NetConfig {
                    listen,
                    ..NetConfig::default()
                },
                relay,
                bootstrap,
                ledger: crate::ledger::LedgerConfig::default(),
            },
            api_listen,
            api_tls,
            tokens,
            hub_compat,
        })
    }
}

/// The TLS configuration of section `section` (`api`, `hub_compat`) from its `tls_cert`
/// and `tls_key`: both or neither, the key owner-only (as key files are).
fn tls_config(
    section: &str,
    cert: Option<&Path>,
    key: Option<&Path>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (resolve(cert), resolve(key)),
        (Some(_), None) => {
            return Err(invalid(
                format!("{section}.tls_key"),
                format!("is needed with {section}.tls_cert"),
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                format!("{section}.tls_cert"),
                format!("is needed with {section}.tls_key"),
            ));
        }
    };
    drop(open_private(&key)?);
    crate::api::tls::server_config(&cert, &key)
        .map(Some)
        .map_err(|e| invalid(format!("{section}.tls_cert"), e.to_string()))
}

/// Longest `systemid`, in bytes.
const MAX_SYSTEM_ID: usize = 128;
/// Largest shared-secret file, in bytes.
const MAX_SECRET_FILE: u64 = 4096;

/// Validates `[hub_compat]`: its address, and each system's id (unique), secret file and
/// tenants (each hosted here).
fn hub_compat_config(
    section: &HubCompatSection,
    tenants: &[TenantKeys],
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<crate::hub_compat::HubConfig, ConfigError> {
    let listen: SocketAddr = section.listen.parse().map_err(|_| {
        invalid(
            "hub_compat.listen",
            format!(
                "is `{}`; expected an address and port such as 127.0.0.1:8090",
                section.listen
            ),
        )
    })?;
    if section.systems.is_empty() {
        return Err(invalid(
            "hub_compat.systems",
            "is empty; list each connected DMS with its systemid, secret_file and tenants",
        ));
    }
    let mut systems: Vec<crate::hub_compat::HubSystem> = Vec::with_capacity(section.systems.len());
    for (i, s) in section.systems.iter().enumerate() {
        let at = |field: &str| format!("hub_compat.systems[{i}].{field}");
        if s.systemid.is_empty()
            || s.systemid.len() > MAX_SYSTEM_ID
            || !s.systemid.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                at("systemid"),
                format!("must be 1 to {MAX_SYSTEM_ID} visible ASCII characters"),
            ));
        }
        if systems.iter().any(|known| known.systemid() == s.systemid) {
            return Err(invalid(
                at("systemid"),
                format!("{} is listed twice", s.systemid),
            ));
        }
        if s.tenants.is_empty() {
            return Err(invalid(
                at("tenants"),
                "is empty; name the hosted agencies this system acts for",
            ));
        }
        let mut ids = Vec::with_capacity(s.tenants.len());
        for (j, code) in s.tenants.iter().enumerate() {
            let field = format!("hub_compat.systems[{i}].tenants[{j}]");
            let id =
                AgencyId::parse(code).map_err(|e| invalid(&field, format!("is `{code}`: {e}")))?;
            if !tenants.iter().any(|t| t.id == id) {
                return Err(invalid(
                    field,
                    format!("{id} is not a tenant of this node ([[tenants]])"),
                ));
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let secret = read_secret(&resolve(&s.secret_file))?;
        systems.push(crate::hub_compat::HubSystem::new(
            s.systemid.clone(),
            secret,
            ids,
        ));
    }
    let mut config = crate::hub_compat::HubConfig::new(listen, systems);
    config.tls = tls_config(
        "hub_compat",
        section.tls_cert.as_deref(),
        section.tls_key.as_deref(),
        resolve,
    )?;
    Ok(config)
}

/// Reads a shared secret from a file readable by its owner only: its text without
/// surrounding whitespace, which must not be empty.
pub fn read_secret(path: &Path) -> Result<zeroize::Zeroizing<String>, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = open_private(path)?;
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_SECRET_FILE + 1),
        &mut text,
    )
    .map_err(read_err)?;
    let problem = if text.len() as u64 > MAX_SECRET_FILE {
        Some(format!("is larger than {MAX_SECRET_FILE} bytes"))
    } else if text.trim().is_empty() {
        Some("is empty; write the shared secret in it".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(ConfigError::Key {
            path: path.to_path_buf(),
            problem,
        });
    }
    Ok(zeroize::Zeroizing::new(text.trim().to_owned()))
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .ok()?;
    bytes.try_into().ok()
}

/// Reads a key file of the expected kind, refusing one readable by group or others: its
/// 32-byte secret.
pub fn read_key(
    path: &Path,
    kind: KeyFileKind,
) -> Result<zeroize::Zeroizing<[u8; 32]>, ConfigError> {
    let key_err = |problem: String| ConfigError::Key {
        path: path.to_path_buf(),
        problem,
    };
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = open_private(path)?;
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut file, &mut text).map_err(read_err)?;
    let key = KeyFile::parse(&text).map_err(|e| key_err(e.to_string()))?;
    if key.kind != kind {
        let label = |k: KeyFileKind| match k {
            KeyFileKind::Signing => "an ed25519-signing",
            KeyFileKind::Encryption => "an x25519-encryption",
            KeyFileKind::Transport => "an ed25519-transport",
        };
        return Err(key_err(format!(
            "holds {} key where {} key is expected",
            label(key.kind),
            label(kind)
        )));
    }
    Ok(key.secret)
}

/// Opens a secret file, refusing one readable by group or others (checked on the opened
/// file, so the file read is the file checked).
fn open_private(path: &Path) -> Result<std::fs::File, ConfigError> {
    use std::os::unix::fs::PermissionsExt as _;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::Key {
            path: path.to_path_buf(),
            problem: format!("is readable by others (mode {mode:04o}); run `chmod 600` on it"),
        });
    }
    Ok(file)
}

/// Writes a key file with mode 0600 (created new: an existing key is never overwritten).
pub fn write_key(path: &Path, file: &KeyFile) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    out.write_all(file.to_text().as_bytes())?;
    out.sync_all()
}

/// A node to lay out on disk, as `lienthong init` does and local federations reuse.
#[derive(Debug)]
pub struct NodeLayout<'a> {
    /// Label written in the transport key file.
    pub owner: &'a str,
    /// Seed of the libp2p identity.
    pub transport_seed: &'a [u8; 32],
    /// Hosted agencies with their secret keys.
    pub tenants: &'a [(AgencyId, &'a SigningKey, &'a EncryptionSecret)],
    /// `network.listen`.
    pub listen: Vec<String>,
    /// `api.listen`.
    pub api_listen: String,
    /// `[relay]` tunables.
    pub relay: RelaySection,
}

/// What [`NodeLayout::write`] produced.
#[derive(Debug)]
pub struct WrittenNode {
    /// `<dir>/config.toml`.
    pub config: PathBuf,
    /// Each tenant's new API bearer token (only its SHA-256 is in the configuration).
    pub tokens: Vec<(AgencyId, String)>,
}

impl NodeLayout<'_> {
    /// Writes `keys/` (mode 0600) and `config.toml` (data in `data/`, the genesis roster
    /// expected at `roster.cbor`), with one new bearer token per tenant drawn from `rng`.
    /// Existing files are never overwritten: the call fails instead.
    pub fn write(
        &self,
        dir: &Path,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> std::io::Result<WrittenNode> {
        use sha2::{Digest, Sha256};
        let config = dir.join("config.toml");
        if config.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists already", config.display()),
            ));
        }
        let keys = dir.join("keys");
        std::fs::create_dir_all(&keys)?;
        write_key(
            &keys.join("transport.key"),
            &KeyFile::transport(self.owner, self.transport_seed),
        )?;
        let mut tenants = Vec::with_capacity(self.tenants.len());
        let mut tokens = Vec::with_capacity(self.tenants.len());
        for (id, signing, encryption) in self.tenants {
            let signing_key = PathBuf::from(format!("keys/{id}.signing.key"));
            let encryption_key = PathBuf::from(format!("keys/{id}.encryption.key"));
            write_key(
                &dir.join(&signing_key),
                &KeyFile::signing(id.as_str(), signing),
            )?;
            write_key(
                &dir.join(&encryption_key),
                &KeyFile::encryption(id.as_str(), encryption),
            )?;
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            let token = data_encoding::BASE64URL_NOPAD.encode(&secret);
            tenants.push(TenantSection {
                id: id.to_string(),
                signing_key,
                encryption_key,
                token_sha256: vec![
                    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes())),
                ],
            });
            tokens.push((id.clone(), token));
        }
        let file = FileConfig {
            data_dir: "data".into(),
            genesis_roster: "roster.cbor".into(),
            transport_key: "keys/transport.key".into(),
            network: NetworkSection {
                listen: self.listen.clone(),
                bootstrap: Vec::new(),
            },
            api: ApiSection {
                listen: self.api_listen.clone(),
                ..ApiSection::default()
            },
            tenants,
            relay: self.relay.clone(),
            hub_compat: None,
        };
        let text = toml::to_string_pretty(&file).map_err(std::io::Error::other)?;
        std::fs::write(&config, text)?;
        Ok(WrittenNode { config, tokens })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn key_files_readable_by_others_or_of_another_kind_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transport.key");
        write_key(&path, &KeyFile::transport("node", &[7; 32])).unwrap();
        assert_eq!(*read_key(&path, KeyFileKind::Transport).unwrap(), [7; 32]);

        let err = read_key(&path, KeyFileKind::Signing)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ed25519-transport") && err.contains("ed25519-signing"),
            "{err}"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key(&path, KeyFileKind::Transport)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600") && err.contains("0644"), "{err}");
    }

    #[test]
    fn hub_compat_systems_are_validated_and_their_secrets_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("dms.secret");
        std::fs::write(&secret, "  s3cret\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let tenants = [TenantKeys {
            id: AgencyId::parse("000.00.00.H41").unwrap(),
            signing: SigningKey::from_seed(&[1; 32]),
            encryption: EncryptionSecret::from_bytes(&[2; 32]),
        }];
        let base = dir.path().to_path_buf();
        let resolve = move |p: &Path| base.join(p);
        let section = |tenant: &str| HubCompatSection {
            listen: "127.0.0.1:8090".into(),
            systems: vec![HubSystemSection {
                systemid: "dms-h41".into(),
                secret_file: "dms.secret".into(),
                tenants: vec![tenant.into()],
            }],
            tls_cert: None,
            tls_key: None,
        };
        let config = hub_compat_config(&section("000.00.00.H41"), &tenants, &resolve).unwrap();
        assert!(config.tls.is_none());
        // HTTPS is configured as for the API: both files or neither.
        let mut half = section("000.00.00.H41");
        half.tls_cert = Some("hub.crt".into());
        let err = hub_compat_config(&half, &tenants, &resolve)
            .unwrap_err()
            .to_string();
        assert!(err.contains("hub_compat.tls_key"), "{err}");
        let system = config.system("dms-h41").unwrap();
        assert_eq!(system.secret(), "s3cret");
        assert!(!format!("{config:?}").contains("s3cret"));

        let err = hub_compat_config(&section("000.00.00.H44"), &tenants, &resolve)
            .unwrap_err()
            .to_string();
        assert!(err.contains("hub_compat.systems[0].tenants[0]"), "{err}");

        let mut twice = section("000.00.00.H41");
        twice.systems.push(twice.systems[0].clone());
        let err = hub_compat_config(&twice, &tenants, &resolve)
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");

        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = hub_compat_config(&section("000.00.00.H41"), &tenants, &resolve)
            .unwrap_err()
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");

        let text = "listen = \"127.0.0.1:8090\"\n[[systems]]\nsystemid = \"a\"\nsecret_file = \"s\"\ntenants = [\"000.00.00.H41\"]\n";
        let parsed: HubCompatSection = toml::from_str(text).unwrap();
        assert_eq!(parsed.systems[0].systemid, "a");
    }
}
