//! Witnessing the other central nodes' logs (C2SP tlog-cosignature).
//!
//! One task per configured log polls its `/checkpoint` and:
//! 1. opens it with the log's key (an unsigned or wrongly signed checkpoint is ignored: it is
//!    no evidence of anything) and checks its origin;
//! 2. compares it with the last checkpoint of that log this witness cosigned:
//!    - same size, same root: already cosigned (the cosignature is pushed again if the log
//!      does not show it);
//!    - same size, different root: **split view** (alarm);
//!    - larger: fetches `/proof/consistency` and checks it with
//!      [`rfc6962::verify_consistency`]; a proof that does not verify means **inconsistent
//!      history** (alarm);
//!    - smaller: checks the reverse consistency (alarm if it fails), never cosigns;
//! 3. cosigns, stores the new checkpoint as the last cosigned one (synced) **before** the
//!    cosignature leaves the node, and pushes it to the log's `POST /cosignature`.
//!
//! An alarm keeps both signed checkpoints as evidence, in the `alarms` family, served at
//! `GET /alarms`. The witness never cosigns that log's checkpoints again unless they are
//! consistent with the last one it cosigned, which a forked log cannot produce.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lienthong_node::http_body::{BodyError, read_limited};
use lienthong_protocol::rfc6962::{self, Hash};
use lienthong_protocol::signed_note::{Ed25519Verifier, MAX_NOTE_BYTES, Note};
use lienthong_protocol::tlog_checkpoint::SignedCheckpoint;
use lienthong_protocol::tlog_cosignature::{Cosigner, CosignerKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::store::{Family, Store, StoreError};

/// Another central node's log, as configured.
#[derive(Debug, Clone)]
pub struct PeerLog {
    /// The central node's name.
    pub name: String,
    /// Its log's origin line.
    pub origin: String,
    /// Base URL (the tlog-tiles prefix), ending in `/`.
    pub url: reqwest::Url,
    /// Its log key.
    pub log_key: Ed25519Verifier,
    /// Its witness key (which cosigns this node's checkpoints).
    pub witness_key: CosignerKey,
}

/// What kind of misbehaviour an alarm reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlarmKind {
    /// Two checkpoints of the same size with different roots.
    SplitView,
    /// A checkpoint not consistent with one cosigned earlier (rewritten history).
    InconsistentHistory,
}

/// Evidence of a misbehaving log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// Hex SHA-256 of the kind and the evidence.
    pub id: String,
    pub kind: AlarmKind,
    /// The central node whose log misbehaved.
    pub log: String,
    pub origin: String,
    pub detail: String,
    /// When this witness saw it (POSIX seconds).
    pub observed_unix: u64,
    /// Both signed checkpoints, as signed notes: the one cosigned earlier, then the new one.
    pub evidence: Vec<String>,
    /// The consistency proof the log gave, if any (base64 hashes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof: Vec<String>,
}

/// Why a poll did not complete (transient: retried at the next poll).
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("fetching {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: response larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("checkpoint from {log} refused: {detail}")]
    BadCheckpoint { log: String, detail: String },
    #[error("consistency proof from {log}: {detail}")]
    BadProof { log: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cosigning: {0}")]
    Cosign(String),
    #[error("blocking task: {0}")]
    Task(String),
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// Cosigned a new checkpoint of this size and pushed the cosignature.
    Cosigned { size: u64 },
    /// Nothing new.
    Unchanged { size: u64 },
    /// Older than the last cosigned one, but consistent: ignored.
    Stale { size: u64 },
    /// Refused, with an alarm.
    Alarm(AlarmKind),
}

/// The witness.
#[derive(Debug)]
pub struct Witness {
    store: Arc<Store>,
    cosigner: Cosigner,
    peers: Vec<PeerLog>,
    client: reqwest::Client,
    /// Last cosigned checkpoint per origin (mirror of the `witness` family).
    last: Mutex<HashMap<String, SignedCheckpoint>>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Deserialize)]
struct ProofBody {
    proof: Vec<String>,
}

impl Witness {
    /// Loads the witness state. Blocks.
    pub fn open(
        store: Arc<Store>,
        cosigner: Cosigner,
        peers: Vec<PeerLog>,
        request_timeout: Duration,
    ) -> Result<Self, WitnessError> {
        let mut last = HashMap::new();
        for p in &peers {
            if let Some(b) = store.get(Family::Witness, p.origin.as_bytes())? {
                let c = SignedCheckpoint::parse(&b)
                    .map_err(|e| store.corrupt(format!("witness state for {}: {e}", p.origin)))?;
                last.insert(p.origin.clone(), c);
            }
        }
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .build()
            .map_err(|source| WitnessError::Http {
                url: String::new(),
                source,
            })?;
        Ok(Self {
            store,
            cosigner,
            peers,
            client,
            last: Mutex::new(last),
        })
    }

    /// The configured logs.
    #[must_use]
    pub fn peers(&self) -> &[PeerLog] {
        &self.peers
    }

    /// The witness's public key.
    #[must_use]
    pub fn public_key(&self) -> CosignerKey {
        self.cosigner.public()
    }

    /// The last checkpoint of `origin` this witness cosigned.
    #[must_use]
    pub fn last_cosigned(&self, origin: &str) -> Option<SignedCheckpoint> {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin)
            .cloned()
    }

    /// Every alarm raised, oldest id first (at most `limit`). Blocks.
    pub fn alarms(&self, limit: usize) -> Result<Vec<Alarm>, StoreError> {
        let rows = self.store.scan_from(Family::Alarms, &[], limit)?;
        Ok(rows
            .iter()
            .filter_map(|(_, v)| serde_json::from_slice(v).ok())
            .collect())
    }

    async fn fetch(&self, url: reqwest::Url, limit: usize) -> Result<Vec<u8>, WitnessError> {
        let u = url.to_string();
        let http = |source| WitnessError::Http {
            url: u.clone(),
            source,
        };
        let resp = self.client.get(url.clone()).send().await.map_err(http)?;
        if !resp.status().is_success() {
            return Err(WitnessError::Status {
                url: u,
                status: resp.status().as_u16(),
            });
        }
        read_limited(resp, limit).await.map_err(|e| match e {
            BodyError::Http(source) => http(source),
            BodyError::TooLarge { limit } => WitnessError::TooLarge {
                url: u.clone(),
                limit,
            },
        })
    }

    async fn consistency(
        &self,
        peer: &PeerLog,
        old: u64,
        new: u64,
    ) -> Result<Vec<Hash>, WitnessError> {
        let mut url = peer
            .url
            .join("proof/consistency")
            .map_err(|e| WitnessError::BadProof {
                log: peer.name.clone(),
                detail: e.to_string(),
            })?;
        url.query_pairs_mut()
            .append_pair("old", &old.to_string())
            .append_pair("new", &new.to_string());
        let body = self.fetch(url, 16 * 1024).await?;
        let bad = |detail: String| WitnessError::BadProof {
            log: peer.name.clone(),
            detail,
        };
        let parsed: ProofBody = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
        if parsed.proof.len() > rfc6962::MAX_PROOF_HASHES {
            return Err(bad("too many hashes".into()));
        }
        parsed
            .proof
            .iter()
            .map(|h| {
                B64.decode(h)
                    .ok()
                    .and_then(|v| Hash::try_from(v.as_slice()).ok())
                    .ok_or_else(|| bad("a hash is not base64 of 32 bytes".into()))
            })
            .collect()
    }

    /// Polls one log once.
    pub async fn poll(&self, peer: &PeerLog) -> Result<PollOutcome, WitnessError> {
        let url = peer
            .url
            .join("checkpoint")
            .map_err(|e| WitnessError::BadCheckpoint {
                log: peer.name.clone(),
                detail: e.to_string(),
            })?;
        let bytes = self.fetch(url, MAX_NOTE_BYTES).await?;
        let new = SignedCheckpoint::open(&bytes, &peer.log_key).map_err(|e| {
            WitnessError::BadCheckpoint {
                log: peer.name.clone(),
                detail: e.to_string(),
            }
        })?;
        if new.checkpoint().origin() != peer.origin {
            return Err(WitnessError::BadCheckpoint {
                log: peer.name.clone(),
                detail: format!(
                    "origin {:?}, expected {:?}",
                    new.checkpoint().origin(),
                    peer.origin
                ),
            });
        }
        let (size, root) = (new.checkpoint().size(), *new.checkpoint().root());
        let Some(old) = self.last_cosigned(&peer.origin) else {
            // First sight: consistent with the empty tree by definition.
            return self.cosign_and_push(peer, &new).await;
        };
        let (old_size, old_root) = (old.checkpoint().size(), *old.checkpoint().root());
        if size == old_size {
            if root != old_root {
                let detail = format!("two checkpoints of size {size} with different roots");
                return self
                    .alarm(peer, AlarmKind::SplitView, detail, &old, &new, &[])
                    .await;
            }
            let mine = self.cosigner.public();
            if new.note().signatures().iter().any(|s| mine.matches(s)) {
                return Ok(PollOutcome::Unchanged { size });
            }
            // Cosigned before, but the log does not show it (the push was lost).
            self.push(peer, &new).await?;
            return Ok(PollOutcome::Cosigned { size });
        }
        let (lo, hi, lo_root, hi_root) = if size > old_size {
            (old_size, size, old_root, root)
        } else {
            (size, old_size, root, old_root)
        };
        let proof = self.consistency(peer, lo, hi).await?;
        if let Err(e) = rfc6962::verify_consistency(lo, hi, &lo_root, &hi_root, &proof) {
            let detail = format!(
                "checkpoint of size {size} is not consistent with the cosigned one of size {old_size}: {e}"
            );
            return self
                .alarm(
                    peer,
                    AlarmKind::InconsistentHistory,
                    detail,
                    &old,
                    &new,
                    &proof,
                )
                .await;
        }
        if size < old_size {
            return Ok(PollOutcome::Stale { size });
        }
        self.cosign_and_push(peer, &new).await
    }

    async fn cosign_and_push(
        &self,
        peer: &PeerLog,
        new: &SignedCheckpoint,
    ) -> Result<PollOutcome, WitnessError> {
        // Persist first: never let a cosignature out that a restart would forget.
        let store = Arc::clone(&self.store);
        let (key, value) = (peer.origin.clone().into_bytes(), new.to_bytes());
        tokio::task::spawn_blocking(move || store.put_synced(Family::Witness, &key, &value))
            .await
            .map_err(|e| WitnessError::Task(e.to_string()))??;
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.origin.clone(), new.clone());
        self.push(peer, new).await?;
        tracing::debug!(log = %peer.name, size = new.checkpoint().size(), "cosigned");
        Ok(PollOutcome::Cosigned {
            size: new.checkpoint().size(),
        })
    }

    async fn push(&self, peer: &PeerLog, cp: &SignedCheckpoint) -> Result<(), WitnessError> {
        let text = cp.note().text();
        let sig = self
            .cosigner
            .cosign_text(text, now_unix())
            .map_err(|e| WitnessError::Cosign(e.to_string()))?;
        let mut note = Note::new(text).map_err(|e| WitnessError::Cosign(e.to_string()))?;
        note.add_signature(sig)
            .map_err(|e| WitnessError::Cosign(e.to_string()))?;
        let url = peer
            .url
            .join("cosignature")
            .map_err(|e| WitnessError::Cosign(e.to_string()))?;
        let u = url.to_string();
        let resp = self
            .client
            .post(url)
            .header("content-type", "text/plain; charset=utf-8")
            .body(note.to_bytes())
            .send()
            .await
            .map_err(|source| WitnessError::Http {
                url: u.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(WitnessError::Status {
                url: u,
                status: resp.status().as_u16(),
            });
        }
        Ok(())
    }

    async fn alarm(
        &self,
        peer: &PeerLog,
        kind: AlarmKind,
        detail: String,
        old: &SignedCheckpoint,
        new: &SignedCheckpoint,
        proof: &[Hash],
    ) -> Result<PollOutcome, WitnessError> {
        let evidence = vec![
            String::from_utf8_lossy(&old.to_bytes()).into_owned(),
            String::from_utf8_lossy(&new.to_bytes()).into_owned(),
        ];
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&kind).unwrap_or_default());
        // The log-signed texts identify the pair; cosignature lines may vary.
        h.update(old.note().text());
        h.update([0]);
        h.update(new.note().text());
        let id: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let alarm = Alarm {
            id: id.clone(),
            kind,
            log: peer.name.clone(),
            origin: peer.origin.clone(),
            detail,
            observed_unix: now_unix(),
            evidence,
            proof: proof.iter().map(|p| B64.encode(p)).collect(),
        };
        let store = Arc::clone(&self.store);
        let json = serde_json::to_vec(&alarm).unwrap_or_default();
        let fresh = tokio::task::spawn_blocking(move || -> Result<bool, StoreError> {
            if store.get(Family::Alarms, id.as_bytes())?.is_some() {
                return Ok(false);
            }
            store.put_synced(Family::Alarms, id.as_bytes(), &json)?;
            Ok(true)
        })
        .await
        .map_err(|e| WitnessError::Task(e.to_string()))??;
        if fresh {
            tracing::error!(log = %peer.name, origin = %peer.origin, kind = ?kind,
                detail = %alarm.detail, "ALARM: log misbehaviour detected; refusing to cosign");
        }
        Ok(PollOutcome::Alarm(kind))
    }

    /// Polls every configured log every `interval` until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, interval: Duration, shutdown: watch::Receiver<bool>) {
        let mut tasks = Vec::new();
        for i in 0..self.peers.len() {
            let this = Arc::clone(&self);
            let mut shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let Some(peer) = this.peers.get(i) else {
                    return;
                };
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut failing = false;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    match this.poll(peer).await {
                        Ok(_) => failing = false,
                        Err(e) => {
                            // Log the first failure of a run, not every poll of an outage.
                            if !failing {
                                tracing::warn!(log = %peer.name, error = %e, "witness poll failed");
                            }
                            failing = true;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
