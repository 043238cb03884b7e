//! The ledger's HTTP interface: C2SP tlog-tiles reads, submissions, proofs, witnessing.
//!
//! | method & path                         | answer                                                    |
//! |---------------------------------------|-----------------------------------------------------------|
//! | `GET /checkpoint`                     | latest signed checkpoint with the cosignatures received   |
//! | `GET /tile/<L>/<N>[.p/<W>]`           | hash tile (immutable: long cache lifetime)                |
//! | `GET /tile/entries/<N>[.p/<W>]`       | entry bundle (immutable: long cache lifetime)             |
//! | `POST /add[?wait=false]`              | body = entry bytes; `{index, duplicate, checkpoint?, proof?}` |
//! | `POST /roster`                        | body = signed roster; verified against the roster in force (k of n), applied to the relay (which gossips it), stored, its entry appended; as `/add` |
//! | `GET /roster`                         | the signed roster in force (CBOR)                         |
//! | `GET /roster/<epoch>`                 | a stored signed roster                                    |
//! | `GET /proof/inclusion?index=&size=`   | `{index, size, proof: [base64 hash]}`                     |
//! | `GET /proof/consistency?old=&new=`    | `{old, new, proof: [base64 hash]}`                        |
//! | `POST /cosignature`                   | body = checkpoint note with a witness's cosignature line  |
//! | `GET /alarms`                         | alarms raised by this node's witness, JSON                |
//!
//! Errors are RFC 9457 problem details (`application/problem+json`: type, title, status,
//! detail). Bodies are size-checked from `Content-Length` before they are read, and never
//! buffered past the limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lienthong_node::node::{Node as RelayNode, NodeError as RelayError};
use lienthong_protocol::ledger::MAX_ENTRY_LEN;
use lienthong_protocol::rfc6962::Hash;
use lienthong_protocol::roster::{MAX_ROSTER_LEN, RosterError, SignedRoster};
use lienthong_protocol::signed_note::MAX_NOTE_BYTES;
use lienthong_protocol::tlog_tiles::{TileId, TileKind};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoints, CosignRejected};
use crate::log::{Log, LogError, Receipt};
use crate::witness::Witness;

/// Cache lifetime of tiles and entry bundles: their contents at a path never change.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Shared state of the handlers.
#[derive(Debug)]
pub struct AppState {
    pub log: Arc<Log>,
    pub checkpoints: Arc<Checkpoints>,
    pub witness: Arc<Witness>,
    /// The relay, which keeps the roster in force (`None`: a ledger-only node, which logs
    /// the rosters it is given without a roster to check them against).
    pub relay: Option<Arc<RelayNode>>,
    /// How long `POST /add` waits for a checkpoint covering the entry.
    pub proof_wait: Duration,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// Short slug; the problem type is `urn:lienthong:problem:<slug>`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl Problem {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: String) -> Self {
        Self {
            status,
            slug,
            title,
            detail,
        }
    }
    fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail.into(),
        )
    }
    fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            detail.into(),
        )
    }
    fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request body too large",
            format!("the body may be at most {limit} bytes"),
        )
    }
    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the node could not answer; see its log".into(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: format!("urn:lienthong:problem:{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            json,
        )
            .into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body was not read: the connection cannot carry another request.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<LogError> for Problem {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Invalid(_) | LogError::Roster(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid-entry",
                "Invalid entry",
                e.to_string(),
            ),
            LogError::RosterConflict { .. } => Self::new(
                StatusCode::CONFLICT,
                "roster-conflict",
                "Roster epoch conflict",
                e.to_string(),
            ),
            LogError::BeyondSize { .. } | LogError::Proof(_) | LogError::Tile(_) => {
                Self::bad_request(e.to_string())
            }
            LogError::Stopped => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "log-stopped",
                "Log stopped",
                e.to_string(),
            ),
            LogError::Write(_) | LogError::Store(_) => Self::internal(e),
        }
    }
}

impl From<CosignRejected> for Problem {
    fn from(e: CosignRejected) -> Self {
        match e {
            CosignRejected::Store(s) => Self::internal(s),
            CosignRejected::Unknown { .. } => Self::not_found(e.to_string()),
            CosignRejected::Mismatch { .. } => Self::new(
                StatusCode::CONFLICT,
                "checkpoint-mismatch",
                "Checkpoint mismatch",
                e.to_string(),
            ),
            _ => Self::new(
                StatusCode::BAD_REQUEST,
                "bad-cosignature",
                "Cosignature refused",
                e.to_string(),
            ),
        }
    }
}

/// Runs blocking storage work on the blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, Problem>
where
    F: FnOnce() -> Result<T, Problem> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Problem::internal)?
}

/// Checks `Content-Length` against `limit` before the body is read.
fn check_length(headers: &HeaderMap, limit: usize) -> Result<(), Problem> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit as u64) {
        return Err(Problem::too_large(limit));
    }
    Ok(())
}

/// Reads a request body of at most `limit` bytes: refused from `Content-Length` before
/// anything is read, and never buffered past the limit when the length is not declared.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, Problem> {
    check_length(req.headers(), limit)?;
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| Problem::too_large(limit))
}

fn encode_hashes(proof: &[Hash]) -> Vec<String> {
    proof.iter().map(|h| B64.encode(h)).collect()
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
        .route("/add", post(add))
        .route("/roster", post(add_roster).get(current_roster))
        .route("/roster/{epoch}", get(roster))
        .route("/proof/inclusion", get(inclusion))
        .route("/proof/consistency", get(consistency))
        .route("/cosignature", post(cosignature))
        .route("/alarms", get(alarms))
        .route("/status", get(status))
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .with_state(state)
}

async fn checkpoint(State(s): State<Arc<AppState>>) -> Result<Response, Problem> {
    let c = s
        .checkpoints
        .latest()
        .ok_or_else(|| Problem::not_found("no checkpoint issued yet"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        c.to_bytes(),
    )
        .into_response())
}

async fn tile(
    State(s): State<Arc<AppState>>,
    Path(path): Path<String>,
) -> Result<Response, Problem> {
    let id = TileId::parse_path(&format!("tile/{path}"))
        .map_err(|e| Problem::not_found(e.to_string()))?;
    let log = Arc::clone(&s.log);
    let data = blocking(move || log.tile(&id).map_err(Problem::from)).await?;
    let data = data.ok_or_else(|| Problem::not_found(format!("{id} is not in the log yet")))?;
    let mut resp = data.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if id.kind == TileKind::Entries {
        h.insert(
            header::HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        );
    }
    Ok(resp)
}

#[derive(Deserialize)]
struct AddQuery {
    #[serde(default)]
    wait: Option<bool>,
}

/// The answer to a submission.
#[derive(Debug, Serialize, Deserialize)]
pub struct AddResponse {
    pub index: u64,
    pub duplicate: bool,
    /// The first checkpoint covering the entry (signed note), when waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// Inclusion proof of the entry in that checkpoint (base64 hashes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Vec<String>>,
}

async fn answer(s: &AppState, receipt: Receipt, wait: bool) -> Result<Response, Problem> {
    let mut out = AddResponse {
        index: receipt.index,
        duplicate: receipt.duplicate,
        checkpoint: None,
        proof: None,
    };
    if wait
        && let Some(cp) = s
            .checkpoints
            .wait_covering(receipt.index, s.proof_wait)
            .await
    {
        let size = cp.checkpoint().size();
        let log = Arc::clone(&s.log);
        let index = receipt.index;
        let proof =
            blocking(move || log.inclusion_proof(index, size).map_err(Problem::from)).await?;
        out.checkpoint = Some(String::from_utf8_lossy(&cp.to_bytes()).into_owned());
        out.proof = Some(encode_hashes(&proof));
    }
    Ok(Json(out).into_response())
}

async fn add(
    State(s): State<Arc<AppState>>,
    q: Result<Query<AddQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let bytes = read_body(req, MAX_ENTRY_LEN).await?;
    let receipt = s.log.append(bytes.to_vec()).await?;
    answer(&s, receipt, q.wait.unwrap_or(true)).await
}

async fn add_roster(
    State(s): State<Arc<AppState>>,
    q: Result<Query<AddQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let bytes = read_body(req, MAX_ROSTER_LEN).await?;
    if let Some(relay) = &s.relay {
        put_in_force(relay, &bytes).await?;
    }
    let log = Arc::clone(&s.log);
    let sub = blocking(move || log.prepare_roster(&bytes).map_err(Problem::from)).await?;
    let receipt = s.log.append_roster(sub).await?;
    answer(&s, receipt, q.wait.unwrap_or(true)).await
}

/// Verifies a posted roster against the roster in force and applies it (the relay
/// persists and gossips it). Re-posting the epoch in force is accepted (idempotent).
async fn put_in_force(relay: &RelayNode, bytes: &[u8]) -> Result<(), Problem> {
    let refused = |status, slug, title, e: &dyn std::fmt::Display| {
        Problem::new(status, slug, title, format!("roster refused: {e}"))
    };
    let signed = SignedRoster::decode(bytes).map_err(|e| {
        refused(
            StatusCode::BAD_REQUEST,
            "invalid-roster",
            "Invalid roster",
            &e,
        )
    })?;
    match relay.apply_roster(signed.clone()).await {
        Ok(epoch) => {
            tracing::info!(epoch, "roster epoch published and in force");
            Ok(())
        }
        Err(RelayError::Roster(e @ RosterError::Stale { .. })) => {
            if relay.signed_roster().await == signed {
                Ok(())
            } else {
                Err(refused(
                    StatusCode::CONFLICT,
                    "stale-roster",
                    "Roster epoch not newer",
                    &e,
                ))
            }
        }
        Err(RelayError::Roster(
            e @ (RosterError::Threshold { .. } | RosterError::UnknownSigner(_)),
        )) => Err(refused(
            StatusCode::FORBIDDEN,
            "roster-signatures",
            "Not signed by k of n root keys of the roster in force",
            &e,
        )),
        Err(RelayError::Roster(e)) => Err(refused(
            StatusCode::BAD_REQUEST,
            "invalid-roster",
            "Invalid roster",
            &e,
        )),
        Err(e) => Err(Problem::internal(e)),
    }
}

/// `GET /status`: what an operator of the central office watches (JSON).
#[derive(Debug, serde::Serialize)]
struct NodeStatus {
    origin: String,
    /// Size of the latest checkpoint, and its signatures (the log's and cosignatures).
    checkpoint_size: Option<u64>,
    checkpoint_signatures: Option<usize>,
    /// The relay's roster epoch in force.
    roster_epoch: Option<u64>,
    /// Deliveries this node holds in custody until their recipients confirm.
    custody_deliveries: Option<u64>,
    /// libp2p peers connected now.
    peers: Option<u64>,
}

async fn status(State(s): State<Arc<AppState>>) -> Result<Json<NodeStatus>, Problem> {
    let latest = s.checkpoints.latest();
    let mut status = NodeStatus {
        origin: s.checkpoints.origin().to_owned(),
        checkpoint_size: latest.as_ref().map(|c| c.checkpoint().size()),
        checkpoint_signatures: latest.as_ref().map(|c| c.note().signatures().len()),
        roster_epoch: None,
        custody_deliveries: None,
        peers: None,
    };
    if let Some(relay) = &s.relay {
        status.roster_epoch = Some(relay.roster().borrow().epoch);
        let pending = relay
            .driver()
            .pending_deliveries()
            .await
            .map_err(Problem::internal)?;
        status.custody_deliveries = Some(pending as u64);
        status.peers = Some(
            relay
                .net()
                .metrics()
                .connected_peers
                .load(std::sync::atomic::Ordering::Relaxed),
        );
    }
    Ok(Json(status))
}

async fn current_roster(State(s): State<Arc<AppState>>) -> Result<Response, Problem> {
    let relay = s.relay.as_ref().ok_or_else(|| {
        Problem::not_found("this node runs no relay and keeps no roster in force")
    })?;
    let bytes = relay
        .signed_roster()
        .await
        .to_bytes()
        .map_err(Problem::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/cbor"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response())
}

async fn roster(
    State(s): State<Arc<AppState>>,
    Path(epoch): Path<String>,
) -> Result<Response, Problem> {
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| Problem::bad_request("the epoch must be a decimal number"))?;
    let log = Arc::clone(&s.log);
    let data = blocking(move || log.roster(epoch).map_err(Problem::from))
        .await?
        .ok_or_else(|| Problem::not_found(format!("no roster of epoch {epoch} is stored")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/cbor"),
            (header::CACHE_CONTROL, IMMUTABLE),
        ],
        data,
    )
        .into_response())
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

#[derive(Serialize)]
struct InclusionBody {
    index: u64,
    size: u64,
    proof: Vec<String>,
}

async fn inclusion(
    State(s): State<Arc<AppState>>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let log = Arc::clone(&s.log);
    let proof =
        blocking(move || log.inclusion_proof(q.index, q.size).map_err(Problem::from)).await?;
    Ok(Json(InclusionBody {
        index: q.index,
        size: q.size,
        proof: encode_hashes(&proof),
    })
    .into_response())
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    old: u64,
    new: u64,
}

#[derive(Serialize)]
struct ConsistencyBody {
    old: u64,
    new: u64,
    proof: Vec<String>,
}

async fn consistency(
    State(s): State<Arc<AppState>>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let log = Arc::clone(&s.log);
    let proof =
        blocking(move || log.consistency_proof(q.old, q.new).map_err(Problem::from)).await?;
    Ok(Json(ConsistencyBody {
        old: q.old,
        new: q.new,
        proof: encode_hashes(&proof),
    })
    .into_response())
}

#[derive(Serialize)]
struct CosignBody {
    attached: usize,
}

async fn cosignature(State(s): State<Arc<AppState>>, req: Request) -> Result<Response, Problem> {
    let bytes = read_body(req, MAX_NOTE_BYTES).await?;
    let cps = Arc::clone(&s.checkpoints);
    let attached = blocking(move || cps.add_cosignatures(&bytes).map_err(Problem::from)).await?;
    Ok(Json(CosignBody { attached }).into_response())
}

async fn alarms(State(s): State<Arc<AppState>>) -> Result<Response, Problem> {
    let w = Arc::clone(&s.witness);
    let list = blocking(move || w.alarms(10_000).map_err(Problem::internal)).await?;
    Ok(Json(list).into_response())
}
