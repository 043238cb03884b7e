//! The ledger client: the agency node's side of the audit ledger (DESIGN §6).
//!
//! * **Queues.** Every envelope one of this node's tenants signs (documents, statuses, the
//!   01 answers the relay signs on their behalf, recalls…) is queued for every central log
//!   of the roster in force, in the same durable batch that stores the envelope
//!   ([`LedgerHook`], one row per log in the `LedgerQueue` column). A queue is on disk,
//!   not in memory: a log that is down for days only makes its own queue grow, and sends
//!   are never refused because of it (that would make a central node a hub). Its only
//!   bound is the disk, whose exhaustion fail-stops the store like any other write.
//!   Memory is bounded by the page a log task reads ([`LedgerConfig::page`]).
//! * **Submission.** One task per log reads a page of its queue, `POST`s each entry to
//!   the log's `/add` (bounded concurrency, no waiting for a checkpoint), fetches the
//!   log's checkpoint, verifies its signature with the roster's log key and its
//!   consistency with the last one held, then asks for each entry's inclusion proof
//!   against it and verifies it. Only then is the entry removed from that log's queue.
//!   A duplicate is answered with its first index and proven like any other. Failures
//!   back off per log, so a log that is down delays only its own queue; when it comes
//!   back, its queue drains into it.
//! * **Checkpoints.** The latest verified checkpoint of each log is kept (in `Meta`,
//!   `ledger/checkpoint/<log>`); a newer one is adopted only with a verified consistency
//!   proof from the one held, and then published on [`CHECKPOINTS_TOPIC`]. Checkpoints
//!   received by gossip go through the same check: a different root for the same size, or
//!   a failed consistency proof, is a **split-view alarm** ([`Alarm`]): logged at error
//!   with both signed checkpoints, stored (`Meta`, `ledger/alarm/…`), counted in
//!   [`LedgerStats::split_views`]. Gossip verdicts: consistent → `Accept`; an alarm →
//!   `Accept` too (the evidence is validly signed by the log, and every node should see
//!   it); of another size whose consistency proof is not asked for now (at most one
//!   gossip-triggered request per log per [`LedgerConfig::gossip_proof_interval`], so
//!   that thousands of nodes do not each ask the log for each checkpoint) → `Accept`
//!   without holding it (validly signed: nodes holding that size compare it); no
//!   signature by a known log key, or the log unreachable for the proof → `Ignore`;
//!   unparsable or a bad signature → `Reject`.

mod checkpoints;
mod queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use data_encoding::BASE64;
use futures::{StreamExt, TryStreamExt, stream};
use lienthong_protocol::ledger::log_origin;
use lienthong_protocol::relay::Verdict;
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::rfc6962::{self, Hash, ProofError};
use lienthong_protocol::roster::{CentralNode, Roster};
use lienthong_protocol::signed_note::{Ed25519Verifier, MAX_NOTE_BYTES, NoteError};
use lienthong_protocol::tlog_checkpoint::{CheckpointError, SignedCheckpoint};
use serde::Deserialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use checkpoints::{Alarm, AlarmKind, Observation};
pub use queue::{LedgerHook, entry_for, queue_key, queue_prefix};

use crate::http_body::BodyError;
use crate::net::{CHECKPOINTS_TOPIC, Command, NetError, NetHandle};
use crate::store::{Store, StoreError, WriteOp};
use lienthong_protocol::relay::records::split_agency_seq_key;

/// How often queues of logs no longer in the roster are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Largest JSON answer read from a log (a proof is at most 64 base64 hashes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Tunables of the ledger client.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Entries read from one log's queue per round.
    pub page: usize,
    /// Requests in flight to one log.
    pub concurrency: usize,
    /// How often an idle log task looks at its queue without being woken.
    pub idle_poll: Duration,
    /// Wait before asking again for entries submitted but not yet in a checkpoint.
    pub pending_poll: Duration,
    /// First delay after a failed round; doubled up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between rounds for a log that keeps failing.
    pub backoff_max: Duration,
    /// Timeout of one HTTP request to a log.
    pub request_timeout: Duration,
    /// Gossiped checkpoints checked at once (more are ignored, not queued).
    pub gossip_checks: usize,
    /// At most one consistency proof per log per interval is asked for because of a
    /// gossiped checkpoint (thousands of nodes gossip each new checkpoint; a log must not
    /// get a request from each for each). Same-size comparisons are never limited.
    pub gossip_proof_interval: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            page: 256,
            concurrency: 16,
            idle_poll: Duration::from_secs(1),
            pending_poll: Duration::from_millis(250),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            gossip_checks: 16,
            gossip_proof_interval: Duration::from_secs(10),
        }
    }
}

/// Counters (for `/metrics`).
#[derive(Debug, Default)]
pub struct LedgerStats {
    /// Entries a log answered `/add` for.
    pub submitted: AtomicU64,
    /// Inclusion proofs verified (entries removed from a queue).
    pub proven: AtomicU64,
    /// Entries a log refused (kept queued; logged at error).
    pub refused: AtomicU64,
    /// Newer checkpoints verified and adopted.
    pub checkpoints: AtomicU64,
    /// Split-view / inconsistency alarms raised (distinct evidence).
    pub split_views: AtomicU64,
    /// Rounds that failed (log unreachable, bad answer, bad proof).
    pub failed_rounds: AtomicU64,
    /// Gossiped checkpoints ignored because too many were being checked.
    pub gossip_overload: AtomicU64,
}

/// Why a round with a log or a check failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("request to {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("{url}: the answer is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("{url}: malformed answer: {reason}")]
    Malformed { url: String, reason: String },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("checkpoint origin {got:?}, expected {expected:?}")]
    WrongOrigin { got: String, expected: String },
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    #[error("log {log} presented a checkpoint that conflicts with one held (split view)")]
    SplitView { log: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(
        "the queue of log {log} names envelope {envelope} (sender #sequence), which is not stored; it stays queued"
    )]
    QueuedEnvelopeMissing { log: String, envelope: String },
}

/// One central log as the roster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    /// The central node's name (the queue's name).
    pub name: String,
    /// The checkpoints' origin line (`<federation>/<name>`).
    pub origin: String,
    /// Base URL, without a trailing slash.
    pub url: String,
    /// The log key, named after the origin.
    pub verifier: Ed25519Verifier,
}

impl LogInfo {
    fn from_roster(roster: &Roster, c: &CentralNode) -> Option<Self> {
        let origin = log_origin(&roster.federation.name, &c.name);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&c.log_key.0).ok()?;
        Some(Self {
            name: c.name.clone(),
            url: c.http_url.trim_end_matches('/').to_owned(),
            verifier: Ed25519Verifier::new(&origin, key).ok()?,
            origin,
        })
    }
}

/// The logs of a roster (central nodes whose key or origin is unusable are skipped, with
/// a warning).
fn logs_of(roster: &Roster) -> Vec<LogInfo> {
    roster
        .central
        .iter()
        .filter_map(|c| {
            let log = LogInfo::from_roster(roster, c);
            if log.is_none() {
                tracing::warn!(log = %c.name, "central node's log key or name is unusable");
            }
            log
        })
        .collect()
}

/// The answer to `POST /add`.
#[derive(Deserialize)]
struct AddAnswer {
    index: u64,
}

/// The answer to `GET /proof/…`.
#[derive(Deserialize)]
struct ProofAnswer {
    proof: Vec<String>,
}

/// What a round with one log achieved.
enum Round {
    /// The queue is empty.
    Empty,
    /// Every entry read was proven.
    Drained,
    /// Some entries are not in a checkpoint yet.
    Waiting,
    /// Nothing was proven and the log refused an entry: asking again at once would only
    /// be refused again.
    Refused,
}

/// The running ledger client (cheap to clone).
#[derive(Debug, Clone)]
pub struct LedgerClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    net: NetHandle,
    http: reqwest::Client,
    config: LedgerConfig,
    roster: watch::Receiver<Arc<Roster>>,
    checkpoints: checkpoints::Book,
    stats: LedgerStats,
    gossip_permits: Arc<Semaphore>,
    /// When each log was last asked for a consistency proof because of gossip.
    gossip_proofs: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
}

impl LedgerClient {
    /// Loads the checkpoints held and starts one submission task per log of the roster in
    /// force (following roster changes). `queued` wakes the tasks when the driver has
    /// durably queued new entries. Stop it with [`LedgerClient::shutdown`] on the
    /// returned sender, then await the handle.
    pub async fn start(
        store: Store,
        net: NetHandle,
        roster: watch::Receiver<Arc<Roster>>,
        queued: watch::Receiver<u64>,
        config: LedgerConfig,
    ) -> Result<(Self, LedgerTask), LedgerError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|source| LedgerError::Http {
                url: String::new(),
                source,
            })?;
        let logs = logs_of(&roster.borrow());
        let book = store
            .read(move |s| checkpoints::Book::load(s, &logs))
            .await?;
        let client = Self {
            inner: Arc::new(Inner {
                gossip_permits: Arc::new(Semaphore::new(config.gossip_checks.max(1))),
                gossip_proofs: std::sync::Mutex::new(HashMap::new()),
                store,
                net,
                http,
                config,
                roster,
                checkpoints: book,
                stats: LedgerStats::default(),
            }),
        };
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(client.clone().supervise(queued, stopped));
        Ok((client, LedgerTask { stop, handle }))
    }

    /// Waits until no gossiped checkpoint is being checked any more (at shutdown: those
    /// checks hold the store).
    pub async fn quiesce(&self) {
        let n = u32::try_from(self.inner.config.gossip_checks.max(1)).unwrap_or(u32::MAX);
        let _ = self.inner.gossip_permits.acquire_many(n).await;
    }

    /// Counters.
    pub fn stats(&self) -> &LedgerStats {
        &self.inner.stats
    }

    /// Entries still queued for `log` (reads the whole queue: for tests and tools).
    pub async fn queued(&self, log: &str) -> Result<usize, StoreError> {
        let prefix = queue_prefix(log);
        self.inner
            .store
            .read(move |s| Ok(s.scan_prefix(Column::LedgerQueue, &prefix)?.len()))
            .await
    }

    /// The latest verified checkpoint held for `log`.
    pub async fn checkpoint(&self, log: &str) -> Option<SignedCheckpoint> {
        self.inner.checkpoints.held(log).await
    }

    /// Every alarm raised so far.
    pub async fn alarms(&self) -> Result<Vec<Alarm>, StoreError> {
        self.inner.store.read(checkpoints::Book::alarms).await
    }

    /// A checkpoint received by gossip: checks it off the caller's task (bounded) and
    /// reports the verdict to the network.
    pub fn gossiped(&self, message: u64, bytes: Vec<u8>) {
        let Ok(permit) = Arc::clone(&self.inner.gossip_permits).try_acquire_owned() else {
            self.inner
                .stats
                .gossip_overload
                .fetch_add(1, Ordering::Relaxed);
            let net = self.inner.net.clone();
            tokio::spawn(async move {
                let _ = net
                    .send(Command::Verdict {
                        message,
                        verdict: Verdict::Ignore,
                    })
                    .await;
            });
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let verdict = this.check_checkpoint(&bytes, "gossip").await;
            let _ = this
                .inner
                .net
                .send(Command::Verdict { message, verdict })
                .await;
            drop(this);
            drop(permit);
        });
    }

    /// Checks a signed checkpoint from elsewhere (gossip, a peer, a tool) against what is
    /// held, raising an alarm on conflict; the verdict for gossip.
    pub async fn check_checkpoint(&self, bytes: &[u8], source: &str) -> Verdict {
        if bytes.len() > MAX_NOTE_BYTES {
            return Verdict::Reject;
        }
        let Ok(cp) = SignedCheckpoint::parse(bytes) else {
            return Verdict::Reject;
        };
        let roster = Arc::clone(&self.inner.roster.borrow());
        let Some(log) = logs_of(&roster)
            .into_iter()
            .find(|l| l.origin == cp.checkpoint().origin())
        else {
            return Verdict::Ignore; // Not a log of the roster in force.
        };
        match cp.verify(&[&log.verifier]) {
            Ok(_) => {}
            Err(CheckpointError::Note(NoteError::NoKnownSignature)) => return Verdict::Ignore,
            Err(_) => return Verdict::Reject,
        }
        match self.observe(&log, cp, source).await {
            Ok(_) => Verdict::Accept,
            Err(e) => {
                tracing::debug!(log = %log.name, error = %e, "gossiped checkpoint not checked");
                Verdict::Ignore
            }
        }
    }

    /// Holds `cp` (signature already verified) against the checkpoint held for `log`.
    async fn observe(
        &self,
        log: &LogInfo,
        cp: SignedCheckpoint,
        source: &str,
    ) -> Result<Observation, LedgerError> {
        let inner = &self.inner;
        let observation = inner
            .checkpoints
            .observe(log, cp.clone(), source, |old, new| {
                let now = source != "gossip" || self.gossip_proof_slot(&log.name);
                async move {
                    if now {
                        self.consistency_proof(log, old, new).await.map(Some)
                    } else {
                        Ok(None)
                    }
                }
            })
            .await?;
        match &observation {
            Observation::New => {
                inner.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                if source != "gossip" {
                    // Gossip forwards what it accepted; what we fetched, we publish.
                    inner
                        .net
                        .send(Command::Publish {
                            topic: CHECKPOINTS_TOPIC.to_owned(),
                            bytes: cp.to_bytes(),
                        })
                        .await?;
                }
            }
            Observation::Alarm(alarm) => {
                if inner.checkpoints.record(alarm).await? {
                    inner.stats.split_views.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        log = %log.name, kind = ?alarm.kind, source = %alarm.source,
                        held = %alarm.held, conflicting = %alarm.conflicting,
                        "ledger split view: the log signed two checkpoints that cannot both hold"
                    );
                }
            }
            Observation::Known | Observation::Older | Observation::Unchecked => {}
        }
        Ok(observation)
    }

    /// Whether a gossiped checkpoint of `log` may trigger a consistency proof request now.
    fn gossip_proof_slot(&self, log: &str) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self
            .inner
            .gossip_proofs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match last.get(log) {
            Some(at) if now.duration_since(*at) < self.inner.config.gossip_proof_interval => false,
            _ => {
                last.insert(log.to_owned(), now);
                true
            }
        }
    }

    /// Runs one submission task per log, following roster changes, until stopped.
    async fn supervise(self, queued: watch::Receiver<u64>, mut stop: watch::Receiver<bool>) {
        let mut roster = self.inner.roster.clone();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<String, (LogInfo, tokio::task::AbortHandle)> = HashMap::new();
        loop {
            let logs = logs_of(&roster.borrow_and_update());
            running.retain(|_, (info, abort)| {
                let keep = logs.iter().any(|l| l == info);
                if !keep {
                    abort.abort();
                }
                keep
            });
            self.sweep(&logs).await;
            for log in logs {
                if !running.contains_key(&log.name) {
                    let abort = tasks.spawn(self.clone().run_log(log.clone(), queued.clone()));
                    running.insert(log.name.clone(), (log, abort));
                }
            }
            tokio::select! {
                changed = roster.changed() => if changed.is_err() { break },
                // Rows a batch in flight added just before a log left the roster.
                () = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stop.wait_for(|s| *s) => break,
                Some(_) = tasks.join_next() => {}
            }
        }
        tasks.shutdown().await;
    }

    /// Drops the queues of logs not in `logs` (declared down: central nodes that left the
    /// roster), walking the distinct queue names by seeking.
    async fn sweep(&self, logs: &[LogInfo]) {
        let mut from = Vec::new();
        loop {
            let start = from.clone();
            let next = self
                .inner
                .store
                .read(move |s| s.first_key_from(Column::LedgerQueue, &start))
                .await;
            let key = match next {
                Ok(Some(key)) => key,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the ledger queues");
                    return;
                }
            };
            let name_len = key.iter().position(|b| *b == 0).unwrap_or(key.len());
            let name = key.get(..name_len).unwrap_or_default();
            from = [name, &[1]].concat();
            let name = String::from_utf8_lossy(name).into_owned();
            if logs.iter().any(|l| l.name == name) {
                continue;
            }
            match self.purge(&name).await {
                Ok(n) => tracing::warn!(log = %name, dropped = n,
                    "central log not in the roster (declared down); its submission queue is dropped"),
                Err(e) => tracing::error!(log = %name, error = %e,
                    "cannot drop the queue of a central log that left the roster"),
            }
        }
    }

    /// Removes every queued entry of `log`; how many.
    async fn purge(&self, log: &str) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let prefix = queue_prefix(log);
            let rows = self
                .inner
                .store
                .read(move |s| s.scan_prefix_limit(Column::LedgerQueue, &prefix, 1024))
                .await?;
            if rows.is_empty() {
                return Ok(total);
            }
            total += rows.len();
            self.inner
                .store
                .write(
                    rows.into_iter()
                        .map(|(key, _)| WriteOp::Delete {
                            family: Column::LedgerQueue,
                            key,
                        })
                        .collect(),
                )
                .await?;
        }
    }

    /// Drains one log's queue into it, forever (backing off while it fails).
    async fn run_log(self, log: LogInfo, mut wake: watch::Receiver<u64>) {
        let config = self.inner.config.clone();
        let mut backoff = config.backoff_min;
        let mut failing = false;
        // Indices the log gave for entries still queued (not yet in a checkpoint), with the
        // entries, so a waiting entry is neither submitted nor read from the store again
        // each round. At most one page.
        let mut known = Known::new();
        loop {
            wake.borrow_and_update();
            match self.round(&log, &mut known).await {
                Ok(round) => {
                    if failing {
                        tracing::info!(log = %log.name, "central log reachable again");
                    }
                    failing = false;
                    backoff = config.backoff_min;
                    match round {
                        Round::Drained => {}
                        Round::Waiting => tokio::time::sleep(config.pending_poll).await,
                        Round::Refused => tokio::time::sleep(config.backoff_max).await,
                        Round::Empty => {
                            let _ = tokio::time::timeout(config.idle_poll, wake.changed()).await;
                        }
                    }
                }
                Err(e) => {
                    known.clear(); // Ask again: the log may have restarted or lied.
                    self.inner
                        .stats
                        .failed_rounds
                        .fetch_add(1, Ordering::Relaxed);
                    if failing {
                        tracing::debug!(log = %log.name, error = %e, retry_in = ?backoff, "ledger submission failed");
                    } else {
                        tracing::warn!(log = %log.name, error = %e, "ledger submission failed; entries stay queued");
                    }
                    failing = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.backoff_max);
                }
            }
        }
    }

    /// One page of one log's queue: submit (each sender's envelopes in order), verify a
    /// checkpoint, prove, dequeue.
    async fn round(&self, log: &LogInfo, known: &mut Known) -> Result<Round, LedgerError> {
        let inner = &self.inner;
        let prefix = queue_prefix(&log.name);
        let page = inner.config.page.max(1);
        let rows = inner
            .store
            .read(move |s| s.scan_prefix_limit(Column::LedgerQueue, &prefix, page))
            .await?;
        known.retain(|key, _| rows.iter().any(|(k, _)| k == key));
        // Entries the log already indexed are known from an earlier round; only new rows are
        // resolved to their envelope's header (a store read each), not every row each round.
        let fresh: Vec<(Vec<u8>, Vec<u8>)> = rows
            .iter()
            .filter(|(key, _)| !known.contains_key(key))
            .cloned()
            .collect();
        let mut resolved: HashMap<Vec<u8>, Option<Vec<u8>>> = if fresh.is_empty() {
            HashMap::new()
        } else {
            inner
                .store
                .read(move |s| {
                    fresh
                        .into_iter()
                        .map(|(key, value)| Ok((key, entry_for(s, &value)?)))
                        .collect()
                })
                .await?
        };
        let prefix_len = queue_prefix(&log.name).len();
        let rows = rows
            .into_iter()
            .map(|(key, _)| {
                let entry = match known.get(&key) {
                    Some((_, entry)) => Some(entry.clone()),
                    None => resolved.remove(&key).flatten(),
                };
                entry.map(|entry| (key.clone(), entry)).ok_or_else(|| {
                    LedgerError::QueuedEnvelopeMissing {
                        log: log.name.clone(),
                        envelope: key
                            .get(prefix_len..)
                            .and_then(split_agency_seq_key)
                            .map_or_else(
                                || "?".to_owned(),
                                |(sender, seq)| format!("{sender} #{seq}"),
                            ),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Ok(Round::Empty);
        }
        let total = rows.len();
        let concurrency = inner.config.concurrency.max(1);
        let known_ref = &*known;
        // Each sender's envelopes reach the log in sequence order (auditors check every
        // chain in log order): one sender's rows, consecutive in the queue's key order, go
        // one after the other; different senders' go concurrently.
        let sender = |key: &[u8]| {
            key.get(prefix_len..)
                .and_then(split_agency_seq_key)
                .map(|(sender, _)| sender)
        };
        let by_sender: Vec<Vec<(Vec<u8>, Vec<u8>)>> = rows
            .chunk_by(|a, b| sender(&a.0) == sender(&b.0))
            .map(<[_]>::to_vec)
            .collect();
        let refused = AtomicBool::new(false);
        let refused_ref = &refused;
        let indexed: Vec<Vec<Added>> = stream::iter(by_sender)
            .map(|group| async move {
                let mut added = Vec::with_capacity(group.len());
                for (key, entry) in group {
                    let index = match known_ref.get(&key) {
                        Some((index, _)) => Some(*index),
                        None => self.add(log, &entry).await?,
                    };
                    match index {
                        Some(i) => added.push((key, entry, i)),
                        // Refused and kept queued: its successors wait behind it.
                        None => {
                            refused_ref.store(true, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                Ok::<_, LedgerError>(added)
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let indexed: Vec<Added> = indexed.into_iter().flatten().collect();

        known.extend(
            indexed
                .iter()
                .map(|(key, entry, index)| (key.clone(), (*index, entry.clone()))),
        );
        let cp = self.fetch_checkpoint(log).await?;
        let (size, root) = (cp.checkpoint().size(), *cp.checkpoint().root());
        let proven: Vec<Vec<u8>> = stream::iter(indexed.into_iter().filter(|e| e.2 < size))
            .map(|(key, entry, index)| async move {
                let proof = self.inclusion_proof(log, index, size).await?;
                rfc6962::verify_inclusion(index, size, &rfc6962::leaf_hash(&entry), &proof, &root)?;
                Ok::<_, LedgerError>(key)
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        let n = proven.len();
        for key in &proven {
            known.remove(key);
        }
        if n > 0 {
            inner
                .store
                .write(
                    proven
                        .into_iter()
                        .map(|key| WriteOp::Delete {
                            family: Column::LedgerQueue,
                            key,
                        })
                        .collect(),
                )
                .await?;
            inner.stats.proven.fetch_add(n as u64, Ordering::Relaxed);
            tracing::debug!(log = %log.name, proven = n, size, "ledger entries proven included");
        }
        Ok(if n == total {
            Round::Drained
        } else if n == 0 && refused.into_inner() {
            Round::Refused
        } else {
            Round::Waiting
        })
    }

    /// `POST /add`: the entry's index, or `None` when the log refuses it (kept queued).
    async fn add(&self, log: &LogInfo, entry: &[u8]) -> Result<Option<u64>, LedgerError> {
        let url = format!("{}/add?wait=false", log.url);
        let resp = self
            .inner
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(entry.to_vec())
            .send()
            .await
            .map_err(|source| LedgerError::Http {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        if status.is_client_error()
            && status != reqwest::StatusCode::TOO_MANY_REQUESTS
            && status != reqwest::StatusCode::REQUEST_TIMEOUT
        {
            self.inner.stats.refused.fetch_add(1, Ordering::Relaxed);
            // The refusal's reason is in its body (a problem document).
            let body = read_any(resp, &url, MAX_ANSWER_BYTES)
                .await
                .unwrap_or_default();
            tracing::error!(log = %log.name, %status, answer = %String::from_utf8_lossy(&body),
                entry = %lienthong_protocol::content_id::ContentId::of(entry), "central log refused a ledger entry; it stays queued");
            return Ok(None);
        }
        let answer: AddAnswer = json(resp, &url).await?;
        self.inner.stats.submitted.fetch_add(1, Ordering::Relaxed);
        Ok(Some(answer.index))
    }

    /// `GET /checkpoint`, verified and checked against the one held.
    async fn fetch_checkpoint(&self, log: &LogInfo) -> Result<SignedCheckpoint, LedgerError> {
        let url = format!("{}/checkpoint", log.url);
        let bytes = read_limited(self.get(&url).await?, &url, MAX_NOTE_BYTES).await?;
        let cp = SignedCheckpoint::open(&bytes, &log.verifier)?;
        if cp.checkpoint().origin() != log.origin {
            return Err(LedgerError::WrongOrigin {
                got: cp.checkpoint().origin().to_owned(),
                expected: log.origin.clone(),
            });
        }
        match self.observe(log, cp.clone(), "fetch").await? {
            Observation::Alarm(_) => Err(LedgerError::SplitView {
                log: log.name.clone(),
            }),
            _ => Ok(cp),
        }
    }

    async fn inclusion_proof(
        &self,
        log: &LogInfo,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        let url = format!("{}/proof/inclusion?index={index}&size={size}", log.url);
        let answer: ProofAnswer = json(self.get(&url).await?, &url).await?;
        hashes(&answer.proof, &url)
    }

    async fn consistency_proof(
        &self,
        log: &LogInfo,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, LedgerError> {
        let url = format!("{}/proof/consistency?old={old}&new={new}", log.url);
        let answer: ProofAnswer = json(self.get(&url).await?, &url).await?;
        hashes(&answer.proof, &url)
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, LedgerError> {
        self.inner
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| LedgerError::Http {
                url: url.to_owned(),
                source,
            })
    }
}

/// The running tasks of a [`LedgerClient`].
#[derive(Debug)]
pub struct LedgerTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl LedgerTask {
    /// Stops every log task and waits for them (queued entries stay on disk).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// A queued entry the log accepted: queue key, entry bytes, index in the log.
type Added = (Vec<u8>, Vec<u8>, u64);

/// Entries still queued that the log already indexed, by queue key: their index and entry
/// bytes (at most one page).
type Known = HashMap<Vec<u8>, (u64, Vec<u8>)>;

/// Reads a successful answer of at most `limit` bytes.
async fn read_limited(
    resp: reqwest::Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, LedgerError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(LedgerError::Status {
            url: url.to_owned(),
            status,
        });
    }
    read_any(resp, url, limit).await
}

/// Reads an answer of at most `limit` bytes, whatever its status.
async fn read_any(
    resp: reqwest::Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, LedgerError> {
    crate::http_body::read_limited(resp, limit)
        .await
        .map_err(|e| match e {
            BodyError::Http(source) => LedgerError::Http {
                url: url.to_owned(),
                source,
            },
            BodyError::TooLarge { limit } => LedgerError::TooLarge {
                url: url.to_owned(),
                limit,
            },
        })
}

async fn json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    url: &str,
) -> Result<T, LedgerError> {
    let body = read_limited(resp, url, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&body).map_err(|e| LedgerError::Malformed {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

fn hashes(encoded: &[String], url: &str) -> Result<Vec<Hash>, LedgerError> {
    encoded
        .iter()
        .map(|h| {
            BASE64
                .decode(h.as_bytes())
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| LedgerError::Malformed {
                    url: url.to_owned(),
                    reason: "a proof hash is not 32 bytes of base64".into(),
                })
        })
        .collect()
}
