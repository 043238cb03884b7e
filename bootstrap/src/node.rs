//! A running central node's ledger: the database, the log and its writer thread, the
//! checkpointer, the witness and the HTTP server, started together and stopped together.
//!
//! Shutdown: one `watch` flag tells the checkpointer, the witness tasks and the server
//! (graceful: in-flight requests finish) to stop; then the log's writer drains its queue and
//! exits, and the database closes when the last handle is dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint::{CheckpointIssueError, Checkpoints};
use crate::config::Config;
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
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    addr: SocketAddr,
    origin: String,
    log: Arc<Log>,
    checkpoints: Arc<Checkpoints>,
    witness: Arc<Witness>,
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
            ..
        } = config;
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

        let (shutdown, rx) = watch::channel(false);
        let mut tasks = Vec::new();
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

    /// Stops everything and closes the database (waits up to 10 s for stray handles).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
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
