//! Generates a whole local federation in one go: root keys, a k-of-n-signed genesis
//! roster, central nodes and agency nodes with their transport and tenant keys, and the
//! [`NodeSetup`] of each node. For devnets, demos and tests; a real federation is built
//! by separate key holders through roster ceremonies instead.

use std::collections::BTreeMap;
use std::path::Path;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::RelayConfig;
use lienthong_protocol::roster::{
    AgencyEntry, AgencyState, CentralNode, Federation, Roster, RosterError, SignedRoster,
};
use rand_core::{CryptoRngCore, RngCore};

use crate::config::{NodeLayout, RelaySection, WrittenNode};
pub use crate::local_ports::free_loopback_port;
use crate::net::NetConfig;
use crate::node::{NodeSetup, TenantKeys};

/// One node to generate.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Label (central nodes: the log's origin name).
    pub name: String,
    /// A central node (bootstrap, relay, custodian, audit log) rather than an agency node.
    pub central: bool,
    /// Agencies hosted (agency nodes), with their official names.
    pub tenants: Vec<(AgencyId, String)>,
    /// TCP port on `host` the node listens on (listed in the roster).
    pub port: u16,
    /// Central nodes: the port of their HTTP (ledger) endpoints on `host`, listed as
    /// `http_url`; `None` lists `port`.
    pub http_port: Option<u16>,
    /// The node's IPv4 address: 127.0.0.1, or its address in a network namespace.
    pub host: std::net::Ipv4Addr,
}

/// Secrets of one generated node.
#[derive(Debug)]
pub struct GeneratedNode {
    /// What was asked for.
    pub spec: NodeSpec,
    /// Seed of the libp2p Ed25519 identity.
    pub transport_seed: [u8; 32],
    /// That identity.
    pub transport: Keypair,
    /// The node's peer id.
    pub peer_id: PeerId,
    /// `/ip4/<host>/tcp/<port>`.
    pub addr: Multiaddr,
    /// Tenants' (signing seed, encryption secret).
    pub tenant_seeds: Vec<(AgencyId, [u8; 32], [u8; 32])>,
    /// Central nodes: the log (checkpoint) key seed.
    pub log_seed: Option<[u8; 32]>,
}

/// A generated federation.
#[derive(Debug)]
pub struct LocalFederation {
    /// The n root keys of the central office.
    pub root_keys: Vec<SigningKey>,
    /// k.
    pub threshold: u8,
    /// The genesis roster, signed by the first k root keys.
    pub genesis: SignedRoster,
    /// The genesis roster, decoded.
    pub roster: Roster,
    /// The nodes, in the order of the specs.
    pub nodes: Vec<GeneratedNode>,
}

fn seed(rng: &mut impl RngCore) -> [u8; 32] {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    seed
}

/// The libp2p identity for a seed.
pub fn transport_keypair(seed: &[u8; 32]) -> Result<Keypair, libp2p::identity::DecodingError> {
    let mut bytes = *seed;
    Keypair::ed25519_from_bytes(&mut bytes)
}

/// Why a local federation could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Roster(#[from] RosterError),
    #[error("transport identity: {0}")]
    Transport(#[from] libp2p::identity::DecodingError),
}

impl LocalFederation {
    /// Generates keys for every node and tenant and signs the genesis roster with the
    /// first `threshold` of `root_count` root keys. Central nodes witness each other with a
    /// quorum of all others but one (at least 1 when there are two or more).
    pub fn generate(
        name: &str,
        specs: &[NodeSpec],
        root_count: usize,
        threshold: u8,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, GenerateError> {
        let root_keys: Vec<SigningKey> = (0..root_count.max(1))
            .map(|_| SigningKey::generate(rng))
            .collect();
        let mut nodes = Vec::with_capacity(specs.len());
        let mut agencies = Vec::new();
        let mut central = Vec::new();
        for spec in specs {
            let transport_seed = seed(rng);
            let transport = transport_keypair(&transport_seed)?;
            let peer_id = transport.public().to_peer_id();
            let addr = Multiaddr::from(spec.host).with(libp2p::multiaddr::Protocol::Tcp(spec.port));
            let mut tenant_seeds = Vec::new();
            for (id, official) in &spec.tenants {
                let (signing, encryption) = (seed(rng), seed(rng));
                agencies.push(AgencyEntry {
                    id: id.clone(),
                    name: official.clone(),
                    level: id.level().unwrap_or(1),
                    parent: id.parent(),
                    signing_key: SigningKey::from_seed(&signing).verifying_key(),
                    encryption_key: EncryptionSecret::from_bytes(&encryption).public_key(),
                    node: peer_id.to_string(),
                    addrs: vec![addr.to_string()],
                    state: AgencyState::Active,
                });
                tenant_seeds.push((id.clone(), signing, encryption));
            }
            let log_seed = spec.central.then(|| seed(rng));
            if let Some(log_seed) = &log_seed {
                central.push(CentralNode {
                    name: spec.name.clone(),
                    peer_id: peer_id.to_string(),
                    addrs: vec![addr.to_string()],
                    log_key: SigningKey::from_seed(log_seed).verifying_key(),
                    http_url: format!(
                        "http://{}:{}",
                        spec.host,
                        spec.http_port.unwrap_or(spec.port)
                    ),
                });
            }
            nodes.push(GeneratedNode {
                spec: spec.clone(),
                transport_seed,
                transport,
                peer_id,
                addr,
                tenant_seeds,
                log_seed,
            });
        }
        agencies.sort_by(|a, b| a.id.cmp(&b.id));
        central.sort_by(|a, b| a.name.cmp(&b.name));
        let witness_quorum = u8::try_from(central.len().saturating_sub(2)).unwrap_or(u8::MAX);
        let roster = Roster {
            epoch: 1,
            issued_ms: 0,
            federation: Federation {
                name: name.to_owned(),
                threshold: threshold.clamp(1, u8::try_from(root_keys.len()).unwrap_or(u8::MAX)),
                root_keys: root_keys.iter().map(SigningKey::verifying_key).collect(),
                witness_quorum: witness_quorum.max(u8::from(central.len() >= 2)),
            },
            agencies,
            central,
        };
        let mut genesis = SignedRoster::propose(&roster)?;
        for key in root_keys
            .iter()
            .take(usize::from(roster.federation.threshold))
        {
            genesis.sign(key);
        }
        Ok(Self {
            threshold: roster.federation.threshold,
            root_keys,
            genesis,
            roster,
            nodes,
        })
    }

    /// A newer epoch of the roster, changed by `change` and signed by `signers` (indices
    /// into [`Self::root_keys`]).
    pub fn next_epoch(
        &self,
        current: &Roster,
        signers: &[usize],
        change: impl FnOnce(&mut Roster),
    ) -> Result<SignedRoster, RosterError> {
        let mut next = current.clone();
        next.epoch += 1;
        change(&mut next);
        let mut signed = SignedRoster::propose(&next)?;
        for i in signers {
            if let Some(key) = self.root_keys.get(*i) {
                signed.sign(key);
            }
        }
        Ok(signed)
    }

    /// The setup of node `index` with its store under `data_dir`, listening on its port;
    /// relay timings suit a local federation (short custody and retry delays).
    pub fn setup(&self, index: usize, data_dir: &Path) -> Option<NodeSetup> {
        let node = self.nodes.get(index)?;
        let mut relay = RelayConfig::new(node.peer_id.to_string());
        relay.custody_after_ms = 1_000;
        relay.retry_base_ms = 200;
        relay.retry_max_ms = 5_000;
        let net = NetConfig {
            listen: vec![node.addr.clone()],
            ..NetConfig::default()
        };
        Some(NodeSetup {
            data_dir: data_dir.to_path_buf(),
            transport: node.transport.clone(),
            tenants: node
                .tenant_seeds
                .iter()
                .map(|(id, signing, encryption)| TenantKeys {
                    id: id.clone(),
                    signing: SigningKey::from_seed(signing),
                    encryption: EncryptionSecret::from_bytes(encryption),
                })
                .collect(),
            genesis: self.genesis.clone(),
            net,
            relay,
            bootstrap: Vec::new(),
            ledger: crate::ledger::LedgerConfig::default(),
        })
    }

    /// Every tenant's signing key seed, by agency.
    pub fn tenant_signing_seeds(&self) -> BTreeMap<AgencyId, [u8; 32]> {
        self.nodes
            .iter()
            .flat_map(|n| n.tenant_seeds.iter().map(|(id, s, _)| (id.clone(), *s)))
            .collect()
    }
}

/// What an agency node's operator hands to the central office to be admitted: the public
/// half of `lienthong init` (JSON, keys in base64). Roster ceremonies turn it into an
/// [`AgencyEntry`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// The agency code.
    pub id: String,
    /// Official name.
    pub name: String,
    /// Ed25519 signing key (base64).
    pub signing_key: String,
    /// X25519 encryption key (base64).
    pub encryption_key: String,
    /// The hosting node's peer id.
    pub node: String,
    /// The node's public addresses (multiaddrs).
    pub addrs: Vec<String>,
}

impl MemberRequest {
    /// The roster entry it asks for (active).
    pub fn to_entry(&self) -> Result<AgencyEntry, RosterError> {
        let bad = |field: &str, problem: &str| RosterError::Field {
            field: format!("member {}: {field}", self.id),
            problem: problem.to_owned(),
        };
        let key32 = |field: &str, b64: &str| -> Result<[u8; 32], RosterError> {
            data_encoding::BASE64
                .decode(b64.as_bytes())
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| bad(field, "must be 32 bytes in base64"))
        };
        let id = AgencyId::parse(&self.id).map_err(|_| bad("id", "not an agency code"))?;
        Ok(AgencyEntry {
            level: id.level().unwrap_or(1),
            parent: id.parent(),
            id,
            name: self.name.clone(),
            signing_key: lienthong_protocol::keys::VerifyingKey(key32(
                "signing_key",
                &self.signing_key,
            )?),
            encryption_key: lienthong_protocol::keys::EncryptionKey(key32(
                "encryption_key",
                &self.encryption_key,
            )?),
            node: self.node.clone(),
            addrs: self.addrs.clone(),
            state: AgencyState::Active,
        })
    }
}

impl LocalFederation {
    /// Writes agency node `index` as an operator would have it after `lienthong init` and
    /// the genesis ceremony: `keys/` (0600), `roster.cbor`, and `config.toml` with the HTTP
    /// API on the node's host, port `api_port`. Bearer tokens are drawn from `rng`.
    pub fn write_node(
        &self,
        index: usize,
        dir: &Path,
        api_port: u16,
        rng: &mut impl CryptoRngCore,
    ) -> std::io::Result<WrittenNode> {
        let node = self
            .nodes
            .get(index)
            .ok_or_else(|| std::io::Error::other(format!("no node {index}")))?;
        let keys: Vec<(AgencyId, SigningKey, EncryptionSecret)> = node
            .tenant_seeds
            .iter()
            .map(|(id, signing, encryption)| {
                (
                    id.clone(),
                    SigningKey::from_seed(signing),
                    EncryptionSecret::from_bytes(encryption),
                )
            })
            .collect();
        let tenants: Vec<(AgencyId, &SigningKey, &EncryptionSecret)> =
            keys.iter().map(|(id, s, e)| (id.clone(), s, e)).collect();
        std::fs::create_dir_all(dir)?;
        let roster = self
            .genesis
            .to_bytes()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::write(dir.join("roster.cbor"), roster)?;
        NodeLayout {
            owner: &node.spec.name,
            transport_seed: &node.transport_seed,
            tenants: &tenants,
            listen: vec![node.addr.to_string()],
            api_listen: format!("{}:{api_port}", node.spec.host),
            relay: RelaySection {
                custody_after_ms: Some(1_000),
                retry_base_ms: Some(200),
                retry_max_ms: Some(5_000),
            },
        }
        .write(dir, rng)
    }
}
