//! The DMS-facing HTTP API (axum), versioned under `/v1`: send, inbox (pull and
//! server-sent events), fetch and open documents and attachments, statuses, trace, recall,
//! update and replace, agencies, health, Prometheus metrics and the OpenAPI document.
//!
//! The node assembly builds an [`ApiState`] from the running parts ([`ApiParts`]) and serves
//! [`router`] on its listener. Everything a DMS relies on is here:
//!
//! * **Auth**: `Authorization: Bearer <token>`; tokens are stored as SHA-256 hashes,
//!   compared in constant time, and act only for their tenants ([`TokenTable`]).
//! * **Errors**: one RFC 9457 problem shape for every failure ([`Problem`]), including the
//!   router's and the extractors' own rejections.
//! * **Limits**: body size checked from `Content-Length` before reading and never
//!   buffered past [`ApiConfig::max_body_bytes`]; attachment count and field lengths
//!   checked before sealing; requests in progress bounded (429 beyond); event streams
//!   bounded; list pages bounded.
//! * **Idempotency**: a send with the same `Idempotency-Key` (or, without one, the same
//!   DMS DocumentId) from the same tenant answers the first send's content id (see
//!   [`documents`]).
//! * **OpenAPI**: generated from the handlers' annotations (utoipa), served at
//!   `/v1/openapi.json`; every route is registered through `utoipa_axum::routes!`, so a route
//!   without a schema cannot be added (checked by a test).
//!
//! Handlers log with ids only (content ids, agency codes, positions): never subjects,
//! document contents, reasons or keys.

pub mod auth;
pub mod documents;
pub mod dto;
pub mod extract;
pub mod inbox;
pub mod metrics;
pub mod open;
pub mod problem;
pub mod system;
pub mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::EncryptionSecret;
use lienthong_protocol::roster::Roster;
use lienthong_protocol::seal::RecipientEpochs;
use tokio::sync::{Semaphore, watch};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::driver::DriverHandle;
use crate::send::SendPath;
use crate::store::Store;

pub use auth::{Caller, TokenTable};
pub use metrics::Metrics;
pub use problem::Problem;

/// Limits and tunables of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body, in bytes (a 50 MiB document in base64 JSON is about 67 MiB).
    pub max_body_bytes: usize,
    /// Requests handled at once; more are answered 429.
    pub max_in_flight: usize,
    /// Server-sent event streams open at once; more are answered 429.
    pub max_streams: usize,
    /// Most inbox entries per page (`limit` is capped to this).
    pub max_page: usize,
    /// How long `/v1/health/ready` waits for the relay driver.
    pub ready_timeout: Duration,
    /// Interval of keep-alive comments on event streams.
    pub keep_alive: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 72 * 1024 * 1024,
            max_in_flight: 256,
            max_streams: 64,
            max_page: 1000,
            ready_timeout: Duration::from_secs(2),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// A tenant's secret the API needs: its encryption key, to open payloads sealed for it.
/// (Signing is done by the relay driver, which holds the signing keys.)
#[derive(Debug)]
pub struct ApiTenant {
    pub id: AgencyId,
    pub encryption: EncryptionSecret,
}

/// Everything [`ApiState::new`] needs from the running node.
pub struct ApiParts {
    pub driver: DriverHandle,
    pub send: SendPath,
    pub store: Store,
    /// The roster in force (the assembly updates it, and the send path's, on a new epoch).
    pub roster: watch::Receiver<Arc<Roster>>,
    /// The hosted tenants' encryption secrets.
    pub tenants: Vec<ApiTenant>,
    /// Hashed bearer tokens and the tenants each acts for.
    pub tokens: TokenTable,
    pub config: ApiConfig,
    /// Connected peers, for `/metrics`, if the node reports them.
    pub peers: Option<PeerCount>,
}

impl std::fmt::Debug for ApiParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiParts")
            .field("tenants", &self.tenants.len())
            .field("tokens", &self.tokens)
            .field("config", &self.config)
            .field("peers", &self.peers.is_some())
            .finish_non_exhaustive()
    }
}

/// A source of the current number of connected peers.
pub type PeerCount = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The shared state of the handlers. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("tenants", &self.inner.tenants.keys().collect::<Vec<_>>())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub driver: DriverHandle,
    pub send: SendPath,
    pub store: Store,
    pub roster: watch::Receiver<Arc<Roster>>,
    pub tenants: HashMap<AgencyId, EncryptionSecret>,
    pub epochs: Mutex<RecipientEpochs>,
    pub tokens: TokenTable,
    pub config: ApiConfig,
    pub metrics: Metrics,
    pub peers: Option<PeerCount>,
    pub in_flight: Arc<Semaphore>,
    pub streams: Arc<Semaphore>,
}

impl ApiState {
    /// The state over a running node.
    pub fn new(parts: ApiParts) -> Self {
        let metrics = Metrics::new(parts.driver.clone(), parts.store.clone());
        let tenants = parts
            .tenants
            .into_iter()
            .map(|t| (t.id, t.encryption))
            .collect();
        Self {
            inner: Arc::new(Inner {
                driver: parts.driver,
                send: parts.send,
                store: parts.store,
                roster: parts.roster,
                tenants,
                epochs: Mutex::new(RecipientEpochs::default()),
                tokens: parts.tokens,
                in_flight: Arc::new(Semaphore::new(parts.config.max_in_flight.max(1))),
                streams: Arc::new(Semaphore::new(parts.config.max_streams.max(1))),
                config: parts.config,
                metrics,
                peers: parts.peers,
            }),
        }
    }

    /// The roster in force.
    pub(crate) fn roster(&self) -> Arc<Roster> {
        Arc::clone(&self.inner.roster.borrow())
    }

    /// Whether this node hosts `tenant` (and can open what is sealed for it).
    pub(crate) fn hosts(&self, tenant: &AgencyId) -> bool {
        self.inner.tenants.contains_key(tenant)
    }
}

/// Title and version of the OpenAPI document; the paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "lienthong node API",
        description = "The agency node's HTTP API for document management systems: send \
            signed, sealed official documents, receive them, post and trace processing \
            statuses. Every error is an RFC 9457 problem (application/problem+json).",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "documents", description = "Send, open, status, trace, recall, update, replace"),
        (name = "inbox", description = "Received documents and statuses"),
        (name = "system", description = "Agencies, health, metrics, this document"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every route with its schema: the router and the OpenAPI document come from this one
/// list, so they cannot differ.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(documents::send_document))
        .routes(routes!(documents::get_document))
        .routes(routes!(documents::get_header))
        .routes(routes!(documents::get_edxml))
        .routes(routes!(documents::get_status_edxml))
        .routes(routes!(documents::get_attachment))
        .routes(routes!(documents::post_status))
        .routes(routes!(documents::get_trace))
        .routes(routes!(documents::recall))
        .routes(routes!(documents::update_document))
        .routes(routes!(documents::replace_document))
        .routes(routes!(documents::revoke_document))
        .routes(routes!(inbox::list_inbox))
        .routes(routes!(inbox::stream_inbox))
        .routes(routes!(system::agencies))
        .routes(routes!(system::live))
        .routes(routes!(system::ready))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_json))
}

/// The OpenAPI document of [`router`] (what `/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The API's router, ready to serve (`axum::serve(listener, router(state))`).
pub fn router(state: ApiState) -> Router {
    let (routes, openapi) = api_routes().split_for_parts();
    let openapi = Arc::new(openapi);
    let max_body = state.inner.config.max_body_bytes;
    routes
        .fallback(|| async { Problem::not_found("no such endpoint") })
        .layer(axum::Extension(openapi))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_and_measure,
        ))
        .layer(middleware::from_fn(problem::problem_for_plain_errors))
        .with_state(state)
}

/// Bounds the requests in progress (429 beyond) and records each one's count and latency
/// per route.
async fn limit_and_measure(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Bounded label values: the route templates, and the usual methods.
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "other",
    }
    .to_owned();
    let Ok(_permit) = Arc::clone(&state.inner.in_flight).try_acquire_owned() else {
        state.inner.metrics.request(&route, &method, 429, 0.0);
        return Problem::too_many().into_response();
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.inner.metrics.request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
