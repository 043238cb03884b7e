//! The federation's agencies from the roster, health probes, Prometheus metrics and the
//! OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lienthong_protocol::roster::AgencyState;

use super::ApiState;
use super::auth::Caller;
use super::dto::{AgenciesResponse, AgencyJson, Health};
use super::problem::Problem;

/// List the federation's agencies.
///
/// From the roster in force, with each agency's standing and whether this node hosts it.
#[utoipa::path(
    get,
    path = "/v1/agencies",
    tag = "system",
    responses(
        (status = 200, description = "The roster's agencies", body = AgenciesResponse),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn agencies(State(state): State<ApiState>, _caller: Caller) -> Json<AgenciesResponse> {
    let roster = state.roster();
    let agencies = roster
        .agencies
        .iter()
        .map(|a| {
            let (standing, successor) = match &a.state {
                AgencyState::Active => ("active", None),
                AgencyState::Suspended => ("suspended", None),
                AgencyState::Revoked => ("revoked", None),
                AgencyState::SucceededBy(next) => ("succeeded", Some(next.clone())),
            };
            AgencyJson {
                id: a.id.clone(),
                name: a.name.clone(),
                level: a.level,
                parent: a.parent.clone(),
                state: standing.to_owned(),
                successor,
                hosted_here: state.hosts(&a.id),
            }
        })
        .collect();
    Json(AgenciesResponse {
        epoch: roster.epoch,
        agencies,
    })
}

/// Liveness.
///
/// 200 while the process answers HTTP. No token needed.
#[utoipa::path(
    get,
    path = "/v1/health/live",
    tag = "system",
    security(()),
    responses((status = 200, description = "Alive", body = Health))
)]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        pending_deliveries: None,
        roster_epoch: None,
    })
}

/// Readiness.
///
/// 200 when the relay driver answers and the store accepts writes; 503 otherwise. No
/// token needed.
#[utoipa::path(
    get,
    path = "/v1/health/ready",
    tag = "system",
    security(()),
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn ready(State(state): State<ApiState>) -> Result<Json<Health>, Problem> {
    if state.inner.store.stats().failed {
        return Err(Problem::unavailable(
            "the store stopped after a failed write; restart the node",
        ));
    }
    let pending = tokio::time::timeout(
        state.inner.config.ready_timeout,
        state.inner.driver.pending_deliveries(),
    )
    .await
    .map_err(|_| Problem::unavailable("the relay driver does not answer"))??;
    Ok(Json(Health {
        status: "ok".to_owned(),
        pending_deliveries: Some(pending as u64),
        roster_epoch: Some(state.roster().epoch),
    }))
}

/// Prometheus metrics.
///
/// Text exposition format: HTTP requests and latency per route, send acknowledgement
/// latency, inbox deliveries, pending deliveries, store writes, peers. No token needed
/// (bind the API to loopback or a trusted network).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    security(()),
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let pending = tokio::time::timeout(
        state.inner.config.ready_timeout,
        state.inner.driver.pending_deliveries(),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|n| n as u64);
    let peers = state.inner.peers.as_ref().map(|count| count());
    let text = state.inner.metrics.render(pending, peers);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// This OpenAPI document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "system",
    security(()),
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(
    Extension(openapi): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Response {
    Json(openapi.as_ref().clone()).into_response()
}
