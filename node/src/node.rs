//! The agency node assembled: the store, the relay driver, the network and the roster in
//! force, and the two pumps that carry the driver's network operations to libp2p and the
//! network's events back to the driver.
//!
//! The same assembly runs on central nodes: with no tenants, the relay only relays and
//! holds custody for others, and the node joins every unit topic of the roster.
//!
//! # Roster epochs
//!
//! The node trusts the genesis roster it was configured with and moves to newer epochs
//! only through [`RosterBook::apply`] (k of n root signatures of the epoch in force).
//! Epochs arrive on the gossip topic [`ROSTER_TOPIC`] as [`SignedRoster`] bytes, or through
//! [`Node::apply_roster`] (CLI, HTTP fetch from a central node). Each accepted epoch is
//! written durably to the `Meta` column (`roster/epoch/<u64 BE>`) before anything acts on
//! it, and replayed in order at start, so a restart lands on the same epoch. Then the relay
//! (revocations refuse senders at once), the network's allow-list (removed peers are
//! disconnected), the send path (recipients' keys) and [`Node::roster`] watchers follow.
//! Central nodes re-announce the epoch in force every [`ROSTER_REPUBLISH`], so a node that
//! was offline when an epoch was published learns it within about a minute of coming back.
//!
//! # Audit ledger
//!
//! The [`LedgerClient`] submits the tenants' envelopes (queued by the driver) to every
//! central log, verifies inclusion and consistency proofs, publishes the checkpoints it
//! verifies on [`CHECKPOINTS_TOPIC`], and judges the ones gossiped by others (split-view
//! alarms); see [`crate::ledger`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::{Event, RelayConfig, Tenant, Verdict, unit_topic};
use lienthong_protocol::roster::{Roster, RosterBook, RosterError, SignedRoster};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;

use crate::control;
use crate::driver::{DriverConfig, DriverError, DriverHandle, Outbound};
use crate::ledger::{LedgerClient, LedgerConfig, LedgerError, LedgerTask};
use crate::net::{
    CHECKPOINTS_TOPIC, Command, NetConfig, NetError, NetEvent, NetHandle, Network, PayloadStore,
    ROSTER_TOPIC, command_for,
};
use crate::send::SendPath;
use crate::store::{Store, StoreError, WriteOp};

/// `Meta` key prefix of the accepted roster epochs.
const ROSTER_EPOCH_PREFIX: &[u8] = b"roster/epoch/";

/// One agency hosted on this node, with its secret keys (not `Clone`: shared by `Arc`).
#[derive(Debug)]
pub struct TenantKeys {
    /// The agency.
    pub id: AgencyId,
    /// Signs its envelopes and statuses.
    pub signing: SigningKey,
    /// Opens payloads sealed for it.
    pub encryption: EncryptionSecret,
}

/// Everything a node needs to start.
#[derive(Debug)]
pub struct NodeSetup {
    /// Where the store lives (`<data_dir>/store`).
    pub data_dir: PathBuf,
    /// The libp2p identity (its peer id is this node's id in the roster).
    pub transport: Keypair,
    /// The agencies hosted here (none on a central node).
    pub tenants: Vec<TenantKeys>,
    /// The trusted genesis roster.
    pub genesis: SignedRoster,
    /// Network tunables and listen addresses; the allow-list and topics are filled in here.
    pub net: NetConfig,
    /// Relay tunables; `node` is set to this node's peer id here.
    pub relay: RelayConfig,
    /// Extra addresses to dial at start (`…/p2p/<peer id>`), always allowed to connect.
    pub bootstrap: Vec<Multiaddr>,
    /// Ledger client tunables (submission to the central logs, checkpoint checks).
    pub ledger: LedgerConfig,
}

/// Why the node could not start or an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("roster: {0}")]
    Roster(#[from] RosterError),
    #[error("transport key: {0}")]
    TransportKey(#[from] libp2p::identity::DecodingError),
    #[error("ledger client: {0}")]
    Ledger(#[from] LedgerError),
    #[error("stored roster epoch {epoch} does not apply: {source}")]
    StoredRoster { epoch: u64, source: RosterError },
    #[error("tenant {tenant} is not in the roster")]
    UnknownTenant { tenant: AgencyId },
    #[error(
        "tenant {tenant} is hosted on node {listed} according to the roster, not on this node ({this})"
    )]
    TenantElsewhere {
        tenant: AgencyId,
        listed: String,
        this: String,
    },
    #[error("tenant {tenant}: the {which} key does not match the roster")]
    TenantKey {
        tenant: AgencyId,
        which: &'static str,
    },
    #[error("bootstrap address {addr} does not end with /p2p/<peer id>")]
    BootstrapAddress { addr: Multiaddr },
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    peer_id: PeerId,
    store: Store,
    driver: DriverHandle,
    net: NetHandle,
    send: SendPath,
    tenants: Arc<[TenantKeys]>,
    roster: Arc<RosterKeeper>,
    ledger: LedgerClient,
    ledger_task: LedgerTask,
    listening: watch::Receiver<Vec<Multiaddr>>,
    /// The pumps (first the network task), stopped in [`Node::shutdown`].
    pumps: Vec<JoinHandle<()>>,
    /// The control socket served (removed at shutdown).
    control_socket: Option<PathBuf>,
}

impl Node {
    /// Opens the store, recovers the relay, starts the network and the pumps, and dials
    /// the federation. Call inside a multi-threaded tokio runtime.
    pub async fn start(setup: NodeSetup) -> Result<Self, NodeError> {
        let peer_id = setup.transport.public().to_peer_id();
        let store_path = setup.data_dir.join("store");
        let store = tokio::task::spawn_blocking(move || Store::open(store_path))
            .await
            .map_err(|_| NetError::Closed)??;
        let book = load_roster(&store, setup.genesis)?;
        let roster = Arc::new(book.current().clone());
        check_tenants(&roster, &setup.tenants, peer_id)?;

        let mut relay = setup.relay;
        relay.node = peer_id.to_string();
        let (driver, outbound) = DriverHandle::start(
            DriverConfig {
                relay,
                roster: Arc::clone(&roster),
                tenants: setup
                    .tenants
                    .iter()
                    .map(|t| Tenant {
                        id: t.id.clone(),
                        key: SigningKey::from_seed(&t.signing.seed()),
                    })
                    .collect(),
            },
            store.clone(),
        )?;

        let bootstrap = setup
            .bootstrap
            .iter()
            .map(|addr| {
                peer_of(addr)
                    .map(|peer| (peer, addr.clone()))
                    .ok_or_else(|| NodeError::BootstrapAddress { addr: addr.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut net_config = setup.net;
        net_config.allowed = allowed_peers(&roster);
        net_config
            .always_allowed
            .extend(bootstrap.iter().map(|(peer, _)| *peer));
        let tenant_ids: Vec<AgencyId> = setup.tenants.iter().map(|t| t.id.clone()).collect();
        net_config.topics = topics(&roster, &tenant_ids);
        let payloads: Arc<dyn PayloadStore> = Arc::new(store.clone());
        let (net, events, task) = Network::new(net_config, setup.transport, payloads)?;
        let mut pumps = vec![tokio::spawn(task.run())];

        let send = SendPath::new(driver.clone(), store.clone(), Arc::clone(&roster));
        let (roster_tx, _) = watch::channel(Arc::clone(&roster));
        let keeper = Arc::new(RosterKeeper {
            book: Mutex::new(book),
            store: store.clone(),
            driver: driver.clone(),
            net: net.clone(),
            send: send.clone(),
            tenants: tenant_ids,
            peer_id,
            watch: roster_tx,
        });
        let (ledger, ledger_task) = LedgerClient::start(
            store.clone(),
            net.clone(),
            keeper.watch.subscribe(),
            driver.ledger_queued(),
            setup.ledger,
        )
        .await?;
        let (listening_tx, listening) = watch::channel(Vec::new());
        pumps.push(tokio::spawn(pump_outbound(outbound, net.clone())));
        pumps.push(tokio::spawn(pump_events(
            events,
            driver.clone(),
            net.clone(),
            Arc::clone(&keeper),
            ledger.clone(),
            listening_tx,
        )));

        if setup.tenants.is_empty() {
            // Central nodes re-announce the epoch in force, so a node that was offline
            // when it was published learns it soon after it reconnects.
            pumps.push(tokio::spawn(republish_roster(
                Arc::clone(&keeper),
                net.clone(),
            )));
        }
        // The operator's control socket (backups while running). A node without one still
        // runs: a backup is then taken with the node stopped.
        let socket = setup.data_dir.join(control::SOCKET_NAME);
        let control_socket = match control::serve(&socket, store.clone()) {
            Ok(task) => {
                pumps.push(task);
                Some(socket)
            }
            Err(e) => {
                tracing::warn!(path = %socket.display(), error = %e, "no control socket: backups need the node stopped");
                None
            }
        };
        for (peer, addrs) in dial_targets(&roster, peer_id, &bootstrap) {
            net.send(Command::Dial { peer, addrs }).await?;
        }
        tracing::info!(%peer_id, epoch = roster.epoch, tenants = setup.tenants.len(), "node started");
        Ok(Self {
            peer_id,
            store,
            driver,
            net,
            send,
            tenants: setup.tenants.into(),
            roster: keeper,
            ledger,
            ledger_task,
            listening,
            pumps,
            control_socket,
        })
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The durable store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The relay driver.
    pub fn driver(&self) -> &DriverHandle {
        &self.driver
    }

    /// The network.
    pub fn net(&self) -> &NetHandle {
        &self.net
    }

    /// The send path (seal, store, submit).
    pub fn send_path(&self) -> &SendPath {
        &self.send
    }

    /// The ledger client (submission queues, checkpoints held, split-view alarms).
    pub fn ledger(&self) -> &LedgerClient {
        &self.ledger
    }

    /// The agencies hosted here.
    pub fn tenants(&self) -> Arc<[TenantKeys]> {
        Arc::clone(&self.tenants)
    }

    /// The roster in force, and its changes.
    pub fn roster(&self) -> watch::Receiver<Arc<Roster>> {
        self.roster.watch.subscribe()
    }

    /// The signed roster in force (to serve to others).
    pub async fn signed_roster(&self) -> SignedRoster {
        self.roster.book.lock().await.signed().clone()
    }

    /// The signed epochs after `after`, oldest first, up to the one in force: the
    /// configured genesis and every epoch applied since (each persisted before use), so
    /// that a follower of [`Self::roster`] that woke once for two epochs misses neither.
    pub async fn signed_rosters_after(&self, after: u64) -> Result<Vec<SignedRoster>, NodeError> {
        let current = self.signed_roster().await;
        let rows = self
            .store
            .read(|s| s.scan_prefix(Column::Meta, ROSTER_EPOCH_PREFIX))
            .await?;
        let mut epochs = Vec::new();
        for (key, value) in rows {
            let epoch = epoch_of_key(&key);
            if epoch > after {
                let signed = SignedRoster::decode(&value)
                    .map_err(|source| NodeError::StoredRoster { epoch, source })?;
                epochs.push((epoch, signed));
            }
        }
        let in_force = current.roster()?.epoch;
        if in_force > after && !epochs.iter().any(|(e, _)| *e == in_force) {
            epochs.push((in_force, current)); // The configured genesis: not a stored epoch.
        }
        epochs.retain(|(e, _)| *e <= in_force);
        epochs.sort_by_key(|(e, _)| *e);
        Ok(epochs.into_iter().map(|(_, s)| s).collect())
    }

    /// Moves to a newer roster epoch (verified against the one in force), durably, and
    /// publishes it to the federation. Returns the new epoch.
    pub async fn apply_roster(&self, signed: SignedRoster) -> Result<u64, NodeError> {
        let bytes = signed.to_bytes()?;
        let epoch = self.roster.apply(signed).await?;
        self.net
            .send(Command::Publish {
                topic: ROSTER_TOPIC.to_owned(),
                bytes,
            })
            .await?;
        Ok(epoch)
    }

    /// The addresses the node listens on so far; waits until there is at least one.
    pub async fn listen_addrs(&self) -> Vec<Multiaddr> {
        let mut rx = self.listening.clone();
        match rx.wait_for(|addrs| !addrs.is_empty()).await {
            Ok(addrs) => addrs.clone(),
            Err(_) => Vec::new(),
        }
    }

    /// Serves the HTTP API for the DMS on `listen` (bound before this returns, so a
    /// client may connect at once). `tokens`: the hashed bearer tokens of each tenant.
    pub async fn serve_api(
        &self,
        listen: std::net::SocketAddr,
        tokens: &[crate::config::TenantTokens],
        config: crate::api::ApiConfig,
    ) -> std::io::Result<ApiServer> {
        self.serve_api_tls(listen, tokens, config, None).await
    }

    /// As [`serve_api`](Self::serve_api), over HTTPS when `tls` is given.
    pub async fn serve_api_tls(
        &self,
        listen: std::net::SocketAddr,
        tokens: &[crate::config::TenantTokens],
        config: crate::api::ApiConfig,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<ApiServer> {
        let mut table = crate::api::TokenTable::new();
        for t in tokens {
            for hash in &t.sha256 {
                table.insert(*hash, t.tenant.clone());
            }
        }
        let state = crate::api::ApiState::new(crate::api::ApiParts {
            driver: self.driver.clone(),
            send: self.send.clone(),
            store: self.store.clone(),
            roster: self.roster(),
            tenants: self
                .tenants
                .iter()
                .map(|t| crate::api::ApiTenant {
                    id: t.id.clone(),
                    encryption: EncryptionSecret::from_bytes(&t.encryption.to_bytes()),
                })
                .collect(),
            tokens: table,
            config,
            peers: Some({
                let net = self.net.clone();
                Arc::new(move || {
                    net.metrics()
                        .connected_peers
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
            }),
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let stopped = async {
            let _ = stopped.await;
        };
        let task = crate::api::tls::spawn_serve(
            listener,
            tls,
            crate::api::router(state),
            stopped,
            "the HTTP API",
        )?;
        tracing::info!(%addr, scheme, "HTTP API listening");
        Ok(ApiServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// Stops the pumps, the network and the driver. Durable state is untouched; whatever
    /// was acknowledged is resumed by the next start.
    ///
    /// Returns once the store is closed, so the same directory can be opened again.
    pub async fn shutdown(self) {
        self.ledger_task.shutdown().await;
        let _ = self.net.send(Command::Shutdown).await;
        self.driver.shutdown().await;
        for pump in &self.pumps {
            pump.abort();
        }
        for pump in self.pumps {
            let _ = pump.await;
        }
        if let Some(socket) = &self.control_socket {
            let _ = std::fs::remove_file(socket);
        }
        // Gossip checks in flight hold the store until they end.
        self.ledger.quiesce().await;
        let Self {
            store,
            send,
            roster,
            ledger,
            ..
        } = self;
        drop((send, roster, ledger));
        // The last handle closes RocksDB and joins its writer thread: blocking.
        let _ = tokio::task::spawn_blocking(move || drop(store)).await;
    }
}

/// The running HTTP API (see [`Node::serve_api`]).
#[derive(Debug)]
pub struct ApiServer {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in progress finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// The roster in force, shared by the event pump (gossip) and [`Node::apply_roster`].
#[derive(Debug)]
struct RosterKeeper {
    book: Mutex<RosterBook>,
    store: Store,
    driver: DriverHandle,
    net: NetHandle,
    send: SendPath,
    tenants: Vec<AgencyId>,
    peer_id: PeerId,
    watch: watch::Sender<Arc<Roster>>,
}

impl RosterKeeper {
    /// Verifies, persists and puts in force a newer epoch; returns it.
    async fn apply(&self, signed: SignedRoster) -> Result<u64, NodeError> {
        let mut book = self.book.lock().await;
        let mut next = book.clone();
        let roster = Arc::new(next.apply(signed.clone())?.clone());
        self.store
            .write(vec![WriteOp::Put {
                family: Column::Meta,
                key: epoch_key(roster.epoch),
                value: signed.to_bytes()?,
            }])
            .await?;
        *book = next;
        drop(book);
        self.driver
            .event(Event::RosterUpdated(Arc::clone(&roster)))
            .await?;
        self.net
            .send(Command::SetAllowed(allowed_peers(&roster)))
            .await?;
        for topic in topics(&roster, &self.tenants) {
            self.net.send(Command::Subscribe(topic)).await?;
        }
        for (peer, addrs) in dial_targets(&roster, self.peer_id, &[]) {
            self.net.send(Command::Dial { peer, addrs }).await?;
        }
        self.send.set_roster(Arc::clone(&roster));
        self.watch.send_replace(Arc::clone(&roster));
        tracing::info!(epoch = roster.epoch, "roster epoch in force");
        Ok(roster.epoch)
    }

    /// A roster epoch from gossip: the verdict that decides whether gossipsub forwards it.
    async fn gossiped(&self, bytes: &[u8]) -> Verdict {
        let signed = match SignedRoster::decode(bytes) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::warn!(error = %e, "malformed roster epoch on gossip");
                return Verdict::Reject;
            }
        };
        match self.apply(signed).await {
            Ok(_) => Verdict::Accept,
            Err(NodeError::Roster(RosterError::Stale { .. })) => Verdict::Ignore,
            Err(NodeError::Roster(e)) => {
                tracing::warn!(error = %e, "roster epoch on gossip refused");
                Verdict::Reject
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot put a roster epoch in force");
                Verdict::Ignore
            }
        }
    }
}

fn epoch_key(epoch: u64) -> Vec<u8> {
    let mut key = ROSTER_EPOCH_PREFIX.to_vec();
    key.extend_from_slice(&epoch.to_be_bytes());
    key
}

/// The epoch of an [`epoch_key`] (0 if malformed).
fn epoch_of_key(key: &[u8]) -> u64 {
    key.get(ROSTER_EPOCH_PREFIX.len()..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// The genesis roster, then every stored epoch in order.
fn load_roster(store: &Store, genesis: SignedRoster) -> Result<RosterBook, NodeError> {
    let mut book = RosterBook::genesis(genesis)?;
    for (key, value) in store.scan_prefix(Column::Meta, ROSTER_EPOCH_PREFIX)? {
        let epoch = epoch_of_key(&key);
        if epoch <= book.current().epoch {
            continue; // Older than the configured genesis (a newer genesis was configured).
        }
        SignedRoster::decode(&value)
            .and_then(|signed| book.apply(signed).map(|_| ()))
            .map_err(|source| NodeError::StoredRoster { epoch, source })?;
    }
    Ok(book)
}

/// Every tenant must be a member hosted on this node, with the keys the roster lists.
fn check_tenants(roster: &Roster, tenants: &[TenantKeys], this: PeerId) -> Result<(), NodeError> {
    for t in tenants {
        let entry = roster
            .agency(&t.id)
            .ok_or_else(|| NodeError::UnknownTenant {
                tenant: t.id.clone(),
            })?;
        if entry.node != this.to_string() {
            return Err(NodeError::TenantElsewhere {
                tenant: t.id.clone(),
                listed: entry.node.clone(),
                this: this.to_string(),
            });
        }
        if entry.signing_key != t.signing.verifying_key() {
            return Err(NodeError::TenantKey {
                tenant: t.id.clone(),
                which: "signing",
            });
        }
        if entry.encryption_key != t.encryption.public_key() {
            return Err(NodeError::TenantKey {
                tenant: t.id.clone(),
                which: "encryption",
            });
        }
    }
    Ok(())
}

/// The roster's nodes as peer ids (entries that do not parse are skipped: the roster is
/// validated, so this only drops what no node could use anyway).
fn allowed_peers(roster: &Roster) -> Vec<PeerId> {
    roster
        .allowed_peers()
        .into_iter()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Gossip topics to join: the tenants' unit topics, or every unit's on a central node.
fn topics(roster: &Roster, tenants: &[AgencyId]) -> Vec<String> {
    let units: BTreeSet<String> = if tenants.is_empty() {
        roster.agencies.iter().map(|a| unit_topic(&a.id)).collect()
    } else {
        tenants.iter().map(unit_topic).collect()
    };
    units
        .into_iter()
        .chain([ROSTER_TOPIC.to_owned(), CHECKPOINTS_TOPIC.to_owned()])
        .collect()
}

/// The last `/p2p/<peer id>` of an address.
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().fold(None, |last, p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => last,
    })
}

/// Every other node of the roster with its listed addresses, plus the bootstrap peers.
fn dial_targets(
    roster: &Roster,
    this: PeerId,
    bootstrap: &[(PeerId, Multiaddr)],
) -> BTreeMap<PeerId, Vec<Multiaddr>> {
    let mut targets: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
    let listed = roster
        .agencies
        .iter()
        .map(|a| (a.node.as_str(), a.addrs.as_slice()))
        .chain(
            roster
                .central
                .iter()
                .map(|c| (c.peer_id.as_str(), c.addrs.as_slice())),
        );
    for (node, addrs) in listed {
        let Ok(peer) = node.parse::<PeerId>() else {
            continue;
        };
        let addrs: Vec<Multiaddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
        if peer != this && !addrs.is_empty() {
            targets.entry(peer).or_default().extend(addrs);
        }
    }
    for (peer, addr) in bootstrap {
        if *peer != this {
            targets.entry(*peer).or_default().push(addr.clone());
        }
    }
    for addrs in targets.values_mut() {
        addrs.sort();
        addrs.dedup();
    }
    targets
}

/// How often a central node re-announces the roster epoch in force. Gossipsub drops a
/// repeat of the same bytes for its duplicate-cache time (a minute), so peers that have
/// it see it about once a minute and ignore it (stale); a peer that missed it applies it.
const ROSTER_REPUBLISH: std::time::Duration = std::time::Duration::from_secs(30);

/// Re-announces the signed roster in force on [`ROSTER_TOPIC`] (central nodes).
async fn republish_roster(keeper: Arc<RosterKeeper>, net: NetHandle) {
    let mut every = tokio::time::interval(ROSTER_REPUBLISH);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let bytes = match keeper.book.lock().await.signed().to_bytes() {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the roster in force");
                continue;
            }
        };
        let publish = Command::Publish {
            topic: ROSTER_TOPIC.to_owned(),
            bytes,
        };
        if net.send(publish).await.is_err() {
            return;
        }
    }
}

/// The driver's network operations, carried to the network task in order.
async fn pump_outbound(mut outbound: mpsc::Receiver<Outbound>, net: NetHandle) {
    while let Some(action) = outbound.recv().await {
        let command = match command_for(action) {
            Ok(Some(command)) => command,
            Ok(None) => {
                tracing::warn!("the relay named a peer id that does not parse; dropped");
                continue;
            }
            Err(other) => {
                tracing::debug!(?other, "not a network action; dropped");
                continue;
            }
        };
        if net.send(command).await.is_err() {
            return; // The network stopped: the node is shutting down.
        }
    }
}

/// The network's events, carried to the driver (and roster epochs to the keeper).
async fn pump_events(
    mut events: mpsc::Receiver<NetEvent>,
    driver: DriverHandle,
    net: NetHandle,
    roster: Arc<RosterKeeper>,
    ledger: LedgerClient,
    listening: watch::Sender<Vec<Multiaddr>>,
) {
    while let Some(event) = events.recv().await {
        match event {
            NetEvent::Listening { addr } => {
                listening.send_modify(|addrs| addrs.push(addr));
            }
            NetEvent::Gossip {
                message,
                topic,
                envelope,
                ..
            } if topic == ROSTER_TOPIC => {
                let verdict = roster.gossiped(&envelope).await;
                if net
                    .send(Command::Verdict { message, verdict })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            NetEvent::Gossip {
                message,
                topic,
                envelope,
                ..
            } if topic == CHECKPOINTS_TOPIC => {
                // Checked off this task (bounded); the ledger client reports the verdict.
                ledger.gossiped(message, envelope);
            }
            NetEvent::Refused { peer, reason } => {
                tracing::debug!(?peer, %reason, "connection refused");
            }
            NetEvent::DialFailed { peer, reason } => {
                tracing::debug!(?peer, %reason, "dial failed");
            }
            NetEvent::SendFailed { peer, reason } => {
                tracing::debug!(%peer, %reason, "relay request failed; the relay retries");
            }
            NetEvent::FetchFailed { manifest, reason } => {
                tracing::debug!(manifest = %hex_prefix(&manifest), %reason, "payload fetch failed; the relay asks again");
            }
            other => {
                if let Some(event) = other.into_relay_event()
                    && driver.event(event).await.is_err()
                {
                    return; // The driver stopped (store failure or shutdown).
                }
            }
        }
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
