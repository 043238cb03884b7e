//! A running central node: the ledger (the database, the log and its writer thread, the
//! checkpointer, the witness, the HTTP server) and the relay (a `lienthong_node` node with
//! no tenants: bootstrap peer, custodian for store-and-forward, circuit relay v2 server,
//! roster gossip), started together and stopped together.
//!
//! The relay owns the roster in force: `POST /roster` applies an epoch through
//! [`lienthong_node::node::Node::apply_roster`] (k of n root signatures of the epoch in
//! force, persisted, gossiped), and a task logs every epoch the relay puts in force (the
//! genesis at start, epochs posted here or gossiped by others) in the ledger.
//!
//! Shutdown: one `watch` flag tells the checkpointer, the witness tasks, the roster logger
//! and the server (graceful: in-flight requests finish) to stop; then the relay stops, the
//! log's writer drains its queue and exits, and the database closes when the last handle is
//! dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use lienthong_node::federation::transport_keypair;
use lienthong_node::net::NetConfig;
use lienthong_node::node::{Node as RelayNode, NodeError as RelayError, NodeSetup};
use lienthong_protocol::relay::RelayConfig;
use lienthong_protocol::roster::SignedRoster;

use crate::checkpoint::{CheckpointIssueError, Checkpoints};
use crate::config::{Config, RelaySetup};
use crate::http::{AppState, router};
use crate::log::{Log, LogError};
use crate::store::{Store, StoreError};
use crate::witness::{Witness, WitnessError};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("creating the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointIssueError),
    #[error(transparent)]
    Witness(#[from] WitnessError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("start-up task failed: {0}")]
    Task(String),
    #[error("relay: {0}")]
    Relay(#[from] RelayError),
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    addr: SocketAddr,
    origin: String,
    log: Arc<Log>,
    checkpoints: Arc<Checkpoints>,
    witness: Arc<Witness>,
    relay: Option<Arc<RelayNode>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Opens the data directory and starts serving on `config.listen`.
    ///
    /// # Errors
    /// Any [`NodeError`].
    pub async fn start(config: Config) -> Result<Self, NodeError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Self::start_on(config, listener).await
    }

    /// As [`Node::start`], on a listener already bound.
    ///
    /// # Errors
    /// Any [`NodeError`].
    pub async fn start_on(config: Config, listener: TcpListener) -> Result<Self, NodeError> {
        let addr = listener.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
        let Config {
            origin,
            data_dir,
            log_signer,
            cosigner,
            peers,
            checkpoint_interval,
            witness_interval,
            request_timeout,
            proof_wait,
            log: log_config,
            relay: relay_setup,
            ..
        } = config;
        let relay_dir = data_dir.join("relay");
        let witnesses = peers.iter().map(|p| p.witness_key.clone()).collect();
        let o = origin.clone();
        let (log, checkpoints, witness) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&data_dir).map_err(|source| NodeError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
            let store = Store::open(&data_dir)?;
            let log = Arc::new(Log::open(Arc::clone(&store), log_config)?);
            let checkpoints = Arc::new(Checkpoints::open(&log, &o, log_signer, witnesses)?);
            // A checkpoint at once, so that `/checkpoint` answers from the start.
            checkpoints.issue(log.head())?;
            let witness = Arc::new(Witness::open(store, cosigner, peers, request_timeout)?);
            Ok::<_, NodeError>((log, checkpoints, witness))
        })
        .await
        .map_err(|e| NodeError::Task(e.to_string()))??;

        let relay = match relay_setup {
            Some(setup) => Some(Arc::new(start_relay(setup, relay_dir).await?)),
            None => None,
        };

        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(relay) = &relay {
            tasks.push(tokio::spawn(log_rosters(
                Arc::clone(relay),
                Arc::clone(&log),
                rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(Arc::clone(&checkpoints).run(
            Arc::clone(&log),
            checkpoint_interval,
            rx.clone(),
        )));
        tasks.push(tokio::spawn(
            Arc::clone(&witness).run(witness_interval, rx.clone()),
        ));
        let app = router(Arc::new(AppState {
            log: Arc::clone(&log),
            checkpoints: Arc::clone(&checkpoints),
            witness: Arc::clone(&witness),
            relay: relay.clone(),
            proof_wait,
        }));
        let mut stop = rx;
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));
        tracing::info!(%origin, %addr, size = log.head().size, "central node ledger serving");
        Ok(Self {
            addr,
            origin,
            log,
            checkpoints,
            witness,
            relay,
            shutdown,
            tasks,
        })
    }

    /// The address served.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The log's origin.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The log.
    #[must_use]
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The checkpoints.
    #[must_use]
    pub fn checkpoints(&self) -> &Arc<Checkpoints> {
        &self.checkpoints
    }

    /// The witness.
    #[must_use]
    pub fn witness(&self) -> &Arc<Witness> {
        &self.witness
    }

    /// The relay (`None` on a ledger-only node).
    #[must_use]
    pub fn relay(&self) -> Option<&Arc<RelayNode>> {
        self.relay.as_ref()
    }

    /// Stops everything and closes the database (waits up to 10 s for stray handles).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(relay) = self.relay {
            // The HTTP server and the roster logger held the other handles; both stopped.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut relay = relay;
            loop {
                match Arc::try_unwrap(relay) {
                    Ok(node) => {
                        node.shutdown().await;
                        break;
                    }
                    Err(still_shared) if tokio::time::Instant::now() < deadline => {
                        relay = still_shared;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(_) => {
                        tracing::error!("relay still in use after 10 s; not stopped cleanly");
                        break;
                    }
                }
            }
        }
        self.log.close().await;
        let store = Arc::downgrade(self.log.store());
        drop(self.witness);
        drop(self.checkpoints);
        drop(self.log);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while store.strong_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tracing::info!(origin = %self.origin, "central node ledger stopped");
    }
}

/// Starts the relay: a node with no tenants, a relay server, its store under `dir`.
async fn start_relay(setup: RelaySetup, dir: std::path::PathBuf) -> Result<RelayNode, NodeError> {
    let transport = transport_keypair(&setup.transport_seed).map_err(RelayError::from)?;
    let peer_id = transport.public().to_peer_id();
    let mut relay = setup
        .relay
        .unwrap_or_else(|| RelayConfig::new(peer_id.to_string()));
    // The timings come from the file; the relay's own node is always this identity.
    relay.node = peer_id.to_string();
    let node = RelayNode::start(NodeSetup {
        data_dir: dir,
        transport,
        tenants: Vec::new(),
        genesis: setup.genesis,
        net: NetConfig {
            listen: setup.listen,
            relay_server: true,
            relay_limits: setup.limits,
            ..NetConfig::default()
        },
        relay,
        bootstrap: Vec::new(),
        // No tenants: nothing of its own to submit; it still checks and gossips the logs'
        // checkpoints it sees.
        ledger: lienthong_node::ledger::LedgerConfig::default(),
    })
    .await?;
    let roster = node.roster().borrow().clone();
    let this = peer_id.to_string();
    if !roster.central.iter().any(|c| c.peer_id == this) {
        tracing::warn!(%peer_id, epoch = roster.epoch,
            "this node's peer id is not a central node of the roster in force: agency nodes will not connect to it");
    }
    Ok(node)
}

/// Logs `signed` in the ledger (a duplicate of an epoch already logged is fine).
async fn log_roster(log: &Arc<Log>, signed: &SignedRoster) {
    let bytes = match signed.to_bytes() {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the roster in force");
            return;
        }
    };
    let l = Arc::clone(log);
    let prepared = tokio::task::spawn_blocking(move || l.prepare_roster(&bytes)).await;
    let result = match prepared {
        Ok(Ok(sub)) => log.append_roster(sub).await.map(|_| ()),
        Ok(Err(e)) => Err(e),
        Err(e) => {
            tracing::error!(error = %e, "roster logging task failed");
            return;
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "roster epoch not logged");
    }
}

/// Logs every roster epoch the relay puts in force, in order, until shutdown. The watch
/// keeps only the latest epoch, so each wake-up logs every epoch since the last one logged
/// (two epochs gossiped in quick succession must both be in the ledger: a replay checks
/// each envelope against the epoch in force when it was logged).
async fn log_rosters(relay: Arc<RelayNode>, log: Arc<Log>, mut stop: watch::Receiver<bool>) {
    let mut epochs = relay.roster();
    let mut logged = 0;
    loop {
        epochs.mark_unchanged();
        match relay.signed_rosters_after(logged).await {
            Ok(signed) => {
                for roster in signed {
                    log_roster(&log, &roster).await;
                    logged = roster.roster().map_or(logged, |r| r.epoch);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the roster epochs to log"),
        }
        tokio::select! {
            changed = epochs.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
