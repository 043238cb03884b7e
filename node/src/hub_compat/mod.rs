//! The hub-compatible listener: speaks the national hub SDK's wire protocol (`SDKVXP`) on
//! its own port, so a DMS already connected to the hub switches to its agency's node by
//! changing `service.endpoint`, with no new code.
//!
//! * **Calls** are `{endpoint}/{operation}`: the operation is the path's last segment, so
//!   any endpoint prefix works. Parameters travel as `XroadVnpt-*` headers.
//! * **Authentication** ([`auth`]): HMAC-SHA256 of the signed-header JSON with the
//!   system's shared secret (`[hub_compat]` in the node's configuration, [`HubConfig`]),
//!   verified in constant time; each system acts for the tenants it is configured with.
//! * **Answers** ([`reply`]): `{"status","ErrorCode","ErrorDesc"}` plus the operation's
//!   field, HTTP 200, one `ErrorCode` per kind of failure, never a bare 500.
//! * **Operations** (`ops`) reuse the HTTP API's internals ([`ApiState`]: sealing and
//!   submitting, idempotency records, opening received documents, statuses) and keep the
//!   listener's own durable state in `meta` under `hub/` (`state`).
//!
//! Logs carry ids (systemid, agency codes, content ids), never contents or secrets.

pub mod auth;
pub mod client;
mod ops;
pub mod reply;
mod state;
pub mod time;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};

use crate::http_body::RequestBodyError;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::edxml::MAX_EDXML_LEN;
use lienthong_protocol::keys::EncryptionSecret;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::api::{ApiConfig, ApiParts, ApiState, ApiTenant, TokenTable};
use crate::driver::now_ms;
use crate::node::Node;
use reply::HubError;
pub use state::Stream;

/// Largest `sendEdoc` body: the largest edXML and a trailing CRLF.
pub const MAX_BODY: usize = MAX_EDXML_LEN + 2;
/// Largest body of the other calls (`{}` or an empty form), read and ignored.
const MAX_SMALL_BODY: usize = 64 * 1024;

/// One connected system (a DMS): its id, shared secret and the tenants it acts for.
pub struct HubSystem {
    systemid: String,
    secret: zeroize::Zeroizing<String>,
    tenants: Vec<AgencyId>,
}

impl std::fmt::Debug for HubSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSystem")
            .field("systemid", &self.systemid)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

impl HubSystem {
    /// A system acting for `tenants` (hosted on the node).
    pub fn new(
        systemid: String,
        secret: zeroize::Zeroizing<String>,
        tenants: Vec<AgencyId>,
    ) -> Self {
        Self {
            systemid,
            secret,
            tenants,
        }
    }

    /// `XroadVnpt-systemid`.
    pub fn systemid(&self) -> &str {
        &self.systemid
    }

    /// The agencies it may act for.
    pub fn tenants(&self) -> &[AgencyId] {
        &self.tenants
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// `agency` if this system may act for it.
    pub(crate) fn may_act_for(&self, agency: &str) -> Result<AgencyId, HubError> {
        let not_yours = || HubError::NotYourAgency {
            agency: agency.to_owned(),
        };
        let id = AgencyId::parse_any(agency.trim()).map_err(|_| not_yours())?;
        if self.tenants.contains(&id) {
            Ok(id)
        } else {
            Err(not_yours())
        }
    }
}

/// The listener's configuration (`[hub_compat]`).
#[derive(Debug)]
pub struct HubConfig {
    /// Where it listens.
    pub listen: SocketAddr,
    /// The connected systems.
    pub systems: Vec<HubSystem>,
    /// Most entries in one list answer.
    pub max_page: usize,
    /// Largest accepted difference between `XroadVnpt-timestamp` and the node's clock.
    pub max_clock_skew_ms: u64,
    /// Calls handled at once; more are answered FAIL (busy).
    pub max_in_flight: usize,
    /// `sendEdoc` calls (each buffers its body) handled at once.
    pub max_sends: usize,
    /// HTTPS (`[hub_compat] tls_cert`, `tls_key`), if configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HubConfig {
    /// Defaults: lists of at most 500, a day of clock skew (the SDK writes local time
    /// without a zone), 128 calls and 8 sends at once.
    pub fn new(listen: SocketAddr, systems: Vec<HubSystem>) -> Self {
        Self {
            listen,
            systems,
            max_page: 500,
            max_clock_skew_ms: 24 * 3_600_000,
            max_in_flight: 128,
            max_sends: 8,
            tls: None,
        }
    }

    /// The system with this id.
    pub fn system(&self, systemid: &str) -> Option<&HubSystem> {
        self.systems.iter().find(|s| s.systemid == systemid)
    }
}

/// Shared by the handlers.
#[derive(Debug)]
pub(crate) struct Hub {
    pub config: HubConfig,
    pub state: state::HubState,
    pub in_flight: Arc<Semaphore>,
    pub sends: Arc<Semaphore>,
}

impl Hub {
    pub(crate) fn api(&self) -> &ApiState {
        self.state.api()
    }
}

/// The operations and the methods each answers.
fn method_allowed(operation: &str, method: &Method) -> Option<bool> {
    let read = *method == Method::GET || *method == Method::POST;
    Some(match operation {
        "sendEdoc" | "registerAgency" | "deleteAgency" => *method == Method::POST,
        "getReceivedEdocList"
        | "getEdoc"
        | "downloadEdoc"
        | "updateStatus"
        | "getSentEdocList"
        | "countReceiveEdoc"
        | "countReceiveStatus"
        | "getAgenciesList" => read,
        _ => return None,
    })
}

/// The listener's router over API internals (`api`), for [`serve`] and tests.
pub fn router(api: ApiState, config: HubConfig) -> Router {
    let hub = Arc::new(Hub {
        in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
        sends: Arc::new(Semaphore::new(config.max_sends.max(1))),
        config,
        state: state::HubState::new(api),
    });
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(hub)
}

async fn handle(
    State(hub): State<Arc<Hub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let operation = uri
        .path()
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or_default()
        .to_owned();
    match call(&hub, &operation, &method, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(operation = %operation, code = e.code(), "hub call refused");
            e.into_response()
        }
    }
}

async fn call(
    hub: &Arc<Hub>,
    operation: &str,
    method: &Method,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HubError> {
    let Some(allowed) = method_allowed(operation, method) else {
        return Err(HubError::UnknownOperation(
            operation.chars().take(64).collect(),
        ));
    };
    if !allowed {
        return Err(HubError::MethodNotAllowed {
            operation: operation.to_owned(),
            method: method.as_str().chars().take(16).collect(),
        });
    }
    let _permit = Arc::clone(&hub.in_flight)
        .try_acquire_owned()
        .map_err(|_| HubError::Busy)?;
    let (system, params) = auth::authenticate(&hub.config, headers, now_ms())?;
    let span = tracing::info_span!("hub", systemid = %system.systemid(), operation);
    let limit = if operation == "sendEdoc" {
        MAX_BODY
    } else {
        MAX_SMALL_BODY
    };
    if crate::http_body::declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(HubError::TooLarge { limit });
    }
    let _send_permit = if operation == "sendEdoc" {
        Some(
            Arc::clone(&hub.sends)
                .try_acquire_owned()
                .map_err(|_| HubError::Busy)?,
        )
    } else {
        None
    };
    let body = crate::http_body::read_request(body, limit, crate::http_body::REQUEST_BODY_IDLE)
        .await
        .map_err(|e| match e {
            RequestBodyError::TooLarge { limit } => HubError::TooLarge { limit },
            e => HubError::Body(e.to_string()),
        })?;
    let call = ops::Call {
        hub,
        system,
        params: &params,
    };
    use tracing::Instrument as _;
    async {
        match operation {
            "sendEdoc" => call.send_edoc(headers, body).await,
            "getReceivedEdocList" => call.received_list().await,
            "getEdoc" => call.get_edoc(false).await,
            "downloadEdoc" => call.get_edoc(true).await,
            "updateStatus" => call.update_status().await,
            "getSentEdocList" => call.sent_list().await,
            "countReceiveEdoc" => call.count(Stream::Edoc).await,
            "countReceiveStatus" => call.count(Stream::Status).await,
            "getAgenciesList" => call.agencies(),
            _ => Err(HubError::Membership),
        }
    }
    .instrument(span)
    .await
}

/// API internals over a running node, for the listener (no bearer tokens: the listener
/// authenticates its own callers).
pub fn api_state(node: &Node) -> ApiState {
    ApiState::new(ApiParts {
        driver: node.driver().clone(),
        send: node.send_path().clone(),
        store: node.store().clone(),
        roster: node.roster(),
        tenants: node
            .tenants()
            .iter()
            .map(|t| ApiTenant {
                id: t.id.clone(),
                encryption: EncryptionSecret::from_bytes(&t.encryption.to_bytes()),
            })
            .collect(),
        tokens: TokenTable::new(),
        config: ApiConfig::default(),
        peers: None,
    })
}

/// Serves the listener for `node` on `config.listen` (bound before this returns).
pub async fn serve(node: &Node, config: HubConfig) -> std::io::Result<HubServer> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let systems = config.systems.len();
    let tls = config.tls.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let app = router(api_state(node), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stopped.await;
    };
    let task =
        crate::api::tls::spawn_serve(listener, tls, app, stopped, "the hub-compatible listener")?;
    tracing::info!(%addr, systems, scheme, "hub-compatible listener listening");
    Ok(HubServer {
        addr,
        stop: Some(stop),
        task,
    })
}

/// The running listener (see [`serve`]).
#[derive(Debug)]
pub struct HubServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl HubServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets calls in progress finish, and waits.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
