//! The relay driver: runs the sans-I/O [`Relay`] on its own thread against the RocksDB
//! [`Store`], turning its actions into durable writes, answers to the DMS, inbox
//! notifications and network operations, and feeding back what happens.
//!
//! One OS thread owns the relay (a current-thread tokio runtime), so the relay's point
//! reads from RocksDB may block it without stalling the node's other tasks. Everything
//! that reaches the driver comes through one bounded command channel; everything it sends
//! to the network goes through one bounded channel, and when that is full the message is
//! dropped and counted: the relay retries every delivery until it is confirmed, so a
//! dropped message is delayed, never lost. Batches are pipelined to the store's group
//! commit with a bounded window; the driver never waits on a full window without first
//! draining completions, so it cannot deadlock on itself.
//!
//! Each batch that stores an envelope signed by a tenant of this node also gets that
//! envelope's ledger submissions, one row per central log ([`LedgerHook`]); once such a
//! batch is durable, [`DriverHandle::ledger_queued`] changes and the ledger client wakes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::relay::store::{Column, StoreView};
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::relay::{
    Action, Event, Relay, RelayConfig, RelayError, StatusPost, Submission, Tenant,
};
use lienthong_protocol::roster::Roster;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::ledger::LedgerHook;
use crate::store::{Completions, Store, StoreError, Submitter};

/// Batches in flight between the relay and the store's writer.
const COMMIT_WINDOW: usize = 1_024;
/// Commands queued for the driver (DMS requests and network events).
const COMMAND_QUEUE: usize = 4_096;
/// Commands taken per wake-up: under load the relay handles a run of submissions and
/// network events before carrying out their actions, rather than waking once per command.
const COMMANDS_PER_WAKE: usize = 64;
/// Inbox notifications kept for slow subscribers (they re-read the inbox on lag).
const NOTIFY_QUEUE: usize = 4_096;

/// What the driver tells the network layer to do: the relay's network actions, as the
/// relay emitted them (`Send` to another peer, `Publish`, `FetchPayload`, `GossipVerdict`,
/// `Penalize`); `crate::net::command_for` turns each into a network command. Messages to
/// this node's own peer id never leave the driver.
pub type Outbound = Action;

/// A tenant's inbox gained an entry (durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub tenant: AgencyId,
    pub id: ContentId,
    pub position: u64,
}

/// Why the driver could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    Refused(#[from] RelayError),
    #[error("the node is shutting down")]
    Stopped,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

enum Command {
    Submit(Submission, oneshot::Sender<Result<ContentId, RelayError>>),
    PostStatus(StatusPost, oneshot::Sender<Result<ContentId, RelayError>>),
    Event(Event),
    Pending(oneshot::Sender<usize>),
    Shutdown,
}

/// Counters the driver keeps (for `/metrics`).
#[derive(Debug, Default)]
pub struct DriverStats {
    pub batches: AtomicU64,
    pub outbound_dropped: AtomicU64,
    pub delivered: AtomicU64,
    pub penalties: AtomicU64,
}

/// A cheap, cloneable handle to the running driver.
#[derive(Debug, Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
    notify: broadcast::Sender<Delivered>,
    next_request: Arc<AtomicU64>,
    stats: Arc<DriverStats>,
    /// Closed (sender dropped) once the driver thread has ended and released the store.
    finished: tokio::sync::watch::Receiver<()>,
    /// Bumped each time a batch that queued ledger submissions is durable.
    ledger_queued: tokio::sync::watch::Receiver<u64>,
}

/// Everything the driver needs to start.
#[derive(Debug)]
pub struct DriverConfig {
    pub relay: RelayConfig,
    pub roster: Arc<Roster>,
    pub tenants: Vec<Tenant>,
}

/// Milliseconds since the Unix epoch by the system clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl StoreView for Store {
    fn get(&self, column: Column, key: &[u8]) -> Option<Vec<u8>> {
        match Store::get(self, column, key) {
            Ok(value) => value,
            Err(e) => {
                // A failing read is as bad as a failing write; the next write fails too and
                // stops the node. Until then, treat the value as absent.
                tracing::error!(column = column.name(), error = %e, "store read failed");
                None
            }
        }
    }
}

impl DriverHandle {
    /// Starts the driver thread: recovers the relay from `store` and runs it. Returns the
    /// handle and the receiver of network operations.
    pub fn start(
        config: DriverConfig,
        store: Store,
    ) -> Result<(Self, mpsc::Receiver<Outbound>), DriverError> {
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (outbound, outbound_rx) = mpsc::channel(COMMAND_QUEUE);
        let (notify, _) = broadcast::channel(NOTIFY_QUEUE);
        let stats = Arc::new(DriverStats::default());
        let node = config.relay.node.clone();
        let ledger = LedgerHook::new(config.tenants.iter().map(|t| t.id.clone()), &config.roster);
        let (ledger_tx, ledger_queued) = tokio::sync::watch::channel(0);
        let rows = store.recover_rows().collect::<Result<Vec<_>, _>>()?;
        let relay = Relay::recover(
            config.relay,
            config.roster,
            config.tenants,
            now_ms(),
            rows,
            &store,
        )?;
        let driver = Driver {
            relay,
            store: store.clone(),
            commands: command_rx,
            outbound,
            notify: notify.clone(),
            replies: HashMap::new(),
            local: VecDeque::new(),
            in_flight: 0,
            stats: Arc::clone(&stats),
            node,
            ledger,
            ledger_batches: HashSet::new(),
            ledger_queued: ledger_tx,
        };
        let (finished_tx, finished) = tokio::sync::watch::channel(());
        std::thread::Builder::new()
            .name("relay-driver".into())
            .spawn(move || {
                // Declared first, dropped last: after the driver and its store handles.
                let _finished = finished_tx;
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the relay driver's runtime");
                        return;
                    }
                };
                runtime.block_on(driver.run(store));
            })
            .map_err(|_| DriverError::Stopped)?;
        let handle = Self {
            commands,
            notify,
            next_request: Arc::new(AtomicU64::new(1)),
            stats,
            finished,
            ledger_queued,
        };
        Ok((handle, outbound_rx))
    }

    fn request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits an envelope; resolves once it is durable (with its content id) or refused.
    pub async fn submit(&self, mut submission: Submission) -> Result<ContentId, DriverError> {
        submission.request = self.request();
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Submit(submission, tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        Ok(rx.await.map_err(|_| DriverError::Stopped)??)
    }

    /// Posts a status; resolves once it is durable or refused.
    pub async fn post_status(&self, mut post: StatusPost) -> Result<ContentId, DriverError> {
        post.request = self.request();
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::PostStatus(post, tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        Ok(rx.await.map_err(|_| DriverError::Stopped)??)
    }

    /// Feeds a network event (message, gossip, connection, payload stored, roster).
    pub async fn event(&self, event: Event) -> Result<(), DriverError> {
        self.commands
            .send(Command::Event(event))
            .await
            .map_err(|_| DriverError::Stopped)
    }

    /// Pending deliveries (own outbox and custody).
    pub async fn pending_deliveries(&self) -> Result<usize, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Pending(tx))
            .await
            .map_err(|_| DriverError::Stopped)?;
        rx.await.map_err(|_| DriverError::Stopped)
    }

    /// Inbox notifications from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivered> {
        self.notify.subscribe()
    }

    /// Counters.
    pub fn stats(&self) -> &DriverStats {
        &self.stats
    }

    /// Changes each time own envelopes were durably queued for the central logs (the
    /// ledger client's wake-up; it reads the queues from the store).
    pub fn ledger_queued(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ledger_queued.clone()
    }

    /// Stops the driver after what is queued and waits until its thread has ended (its
    /// store handles are released); durable state is untouched.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let mut finished = self.finished.clone();
        while finished.changed().await.is_ok() {}
    }
}

struct Driver {
    relay: Relay,
    store: Store,
    commands: mpsc::Receiver<Command>,
    outbound: mpsc::Sender<Outbound>,
    notify: broadcast::Sender<Delivered>,
    replies: HashMap<u64, oneshot::Sender<Result<ContentId, RelayError>>>,
    /// Messages this node sent to itself (co-hosted tenants), fed back in order.
    local: VecDeque<Wire>,
    in_flight: usize,
    stats: Arc<DriverStats>,
    /// This node's peer id.
    node: String,
    /// Adds ledger submissions to batches storing own envelopes.
    ledger: LedgerHook,
    /// Batches in flight that carry ledger submissions.
    ledger_batches: HashSet<u64>,
    ledger_queued: tokio::sync::watch::Sender<u64>,
}

impl Driver {
    async fn run(mut self, store: Store) {
        let (mut submitter, mut completions) = store.pipeline(COMMIT_WINDOW);
        let mut commands = Vec::with_capacity(COMMANDS_PER_WAKE);
        self.feed(Event::Tick);
        loop {
            if let Err(e) = self.drain(&mut submitter, &mut completions).await {
                tracing::error!(error = %e, "store failed; the relay driver stops");
                return;
            }
            let sleep = self
                .relay
                .next_deadline()
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms())));
            tokio::select! {
                received = self.commands.recv_many(&mut commands, COMMANDS_PER_WAKE) => {
                    if received == 0 {
                        return;
                    }
                    for command in commands.drain(..) {
                        if !self.command(command) {
                            return;
                        }
                    }
                }
                committed = completions.recv(), if self.in_flight > 0 => {
                    if !self.committed(committed) {
                        return;
                    }
                }
                () = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {
                    self.feed(Event::Tick);
                }
            }
        }
    }

    /// Takes one command; false when the driver is to stop.
    fn command(&mut self, command: Command) -> bool {
        match command {
            Command::Submit(submission, reply) => {
                self.replies.insert(submission.request, reply);
                self.feed(Event::Submit(submission));
            }
            Command::PostStatus(post, reply) => {
                self.replies.insert(post.request, reply);
                self.feed(Event::PostStatus(post));
            }
            Command::Event(event) => {
                if let Event::RosterUpdated(roster) = &event {
                    self.ledger.set_roster(roster);
                }
                self.feed(event);
            }
            Command::Pending(reply) => {
                let _ = reply.send(self.relay.pending_deliveries());
            }
            Command::Shutdown => return false,
        }
        true
    }

    fn feed(&mut self, event: Event) {
        self.relay.handle(event, now_ms(), &self.store);
    }

    /// Handles one completion; false when the store failed (fail-stop).
    fn committed(&mut self, committed: Option<crate::store::Committed>) -> bool {
        let Some(committed) = committed else {
            return false;
        };
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Err(e) = committed.result {
            tracing::error!(batch = committed.id, error = %e, "batch not durable; the relay driver stops");
            for (_, reply) in self.replies.drain() {
                let _ = reply.send(Err(RelayError::Store(e.to_string())));
            }
            return false;
        }
        if self.ledger_batches.remove(&committed.id) {
            self.ledger_queued.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.feed(Event::Committed {
            batch: committed.id,
        });
        true
    }

    /// Carries out every pending action, including those that carrying out others creates.
    async fn drain(
        &mut self,
        submitter: &mut Submitter,
        completions: &mut Completions,
    ) -> Result<(), StoreError> {
        loop {
            while let Some(committed) = completions.try_recv() {
                if !self.committed(Some(committed.clone())) {
                    return committed.result;
                }
            }
            if let Some(wire) = self.local.pop_front() {
                let peer = self.relay_node();
                self.feed(Event::Message { peer, wire });
                continue;
            }
            let Some(action) = self.relay.poll_action() else {
                return Ok(());
            };
            match action {
                Action::Persist(mut batch) => {
                    if self.ledger.extend(&mut batch) {
                        self.ledger_batches.insert(batch.id);
                    }
                    while self.in_flight >= COMMIT_WINDOW {
                        // Make room without waiting on ourselves.
                        let committed = completions.recv().await;
                        if !self.committed(committed) {
                            return Err(StoreError::Closed {
                                path: self.store.path().to_path_buf(),
                            });
                        }
                    }
                    self.in_flight += 1;
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    submitter.submit(batch).await?;
                }
                Action::Completed { request, result } => {
                    if let Some(reply) = self.replies.remove(&request) {
                        let _ = reply.send(result);
                    }
                }
                Action::Delivered {
                    tenant,
                    id,
                    position,
                } => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%tenant, %id, position, "delivered to inbox");
                    let _ = self.notify.send(Delivered {
                        tenant,
                        id,
                        position,
                    });
                }
                Action::Send { peer, wire } if peer == self.relay_node() => {
                    self.local.push_back(wire)
                }
                network @ (Action::Send { .. }
                | Action::Publish { .. }
                | Action::FetchPayload { .. }
                | Action::GossipVerdict { .. }) => self.out(network),
                Action::Penalize { peer, reason } => {
                    self.stats.penalties.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, %reason, "peer penalised");
                    self.out(Action::Penalize { peer, reason });
                }
                Action::DeliveryEnded {
                    id,
                    recipient,
                    role,
                    outcome,
                } => {
                    tracing::info!(%id, %recipient, ?role, ?outcome, "delivery ended");
                }
                Action::Equivocation(evidence) => {
                    tracing::warn!(sender = %evidence.sender, seq = evidence.seq, first = %evidence.first,
                        second = %evidence.second, "equivocation: two envelopes for one place in a chain");
                }
            }
        }
    }

    fn relay_node(&self) -> String {
        self.node.clone()
    }

    fn out(&self, op: Outbound) {
        if self.outbound.try_send(op).is_err() {
            self.stats.outbound_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
