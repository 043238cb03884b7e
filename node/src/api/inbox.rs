//! A tenant's inbox: received documents and statuses in arrival order, as pages after a
//! cursor (`GET /v1/inbox`) or as a server-sent event stream (`GET /v1/inbox/stream`) that
//! first replays what follows the cursor, then follows the relay's notifications,
//! re-reading the store whenever one arrives or some were missed (lag).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::relay::records::{agency_seq_key, split_agency_seq_key};
use lienthong_protocol::relay::store::Column;
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use super::ApiState;
use super::auth::Caller;
use super::documents::kind_str;
use super::dto::{InboxEntry, InboxPage, rfc3339};
use super::extract::QueryParams;
use super::problem::Problem;

/// Default page size.
pub const DEFAULT_PAGE: usize = 100;
/// Entries read from the store per step of an event stream.
const STREAM_PAGE: usize = 256;

/// `GET /v1/inbox` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxQuery {
    /// The agency whose inbox to read; required when the token acts for several.
    pub tenant: Option<String>,
    /// Return entries after this position (the `next` of the previous page); from the
    /// start when absent.
    #[param(value_type = Option<u64>)]
    pub after: Option<String>,
    /// Entries per page (1 to 1000, default 100).
    #[param(value_type = Option<u32>)]
    pub limit: Option<String>,
}

/// `GET /v1/inbox/stream` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// The agency whose inbox to follow; required when the token acts for several.
    pub tenant: Option<String>,
    /// Start after this position (or after the `Last-Event-ID` header); only new entries
    /// when both are absent.
    #[param(value_type = Option<u64>)]
    pub after: Option<String>,
}

impl ApiState {
    /// At most `limit` inbox entries of `tenant` from position `from` on. Blocking.
    fn inbox_page(
        &self,
        tenant: &AgencyId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, Problem> {
        let mut prefix = tenant.as_str().as_bytes().to_vec();
        prefix.push(0);
        let rows = self.inner.store.scan_range(
            Column::Inbox,
            &prefix,
            &agency_seq_key(tenant, from),
            limit,
        )?;
        let mut entries = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            let Some((_, position)) = split_agency_seq_key(&key) else {
                continue;
            };
            let id = ContentId(
                value
                    .as_slice()
                    .try_into()
                    .map_err(|_| Problem::internal("corrupt inbox entry"))?,
            );
            let Some(env) = self.envelope(&id)? else {
                return Err(Problem::internal(format!(
                    "inbox entry {position} names missing envelope {id}"
                )));
            };
            let body = env.body();
            entries.push(InboxEntry {
                position,
                id: id.to_string(),
                kind: kind_str(body.kind),
                from: body.from.clone(),
                created: rfc3339(body.created_ms),
                created_ms: body.created_ms,
                doc_type: body.routing.doc_type.clone(),
                priority: body.routing.priority,
                due: body.routing.due.clone(),
                refers_to: body.routing.refers_to.map(|r| r.to_string()),
                status: body.routing.status.map(|c| c.as_str().to_owned()),
            });
        }
        Ok(entries)
    }

    /// The next inbox position of `tenant` (where a new entry will go). Blocking.
    fn inbox_end(&self, tenant: &AgencyId) -> Result<u64, Problem> {
        let head = self
            .inner
            .store
            .get(Column::Chains, tenant.as_str().as_bytes())?;
        Ok(match head {
            Some(bytes) => {
                lienthong_protocol::relay::records::decode::<
                    lienthong_protocol::relay::records::ChainHead,
                >(Column::Chains, &bytes)
                .map_err(Problem::internal)?
                .inbox_next
            }
            None => 0,
        })
    }
}

/// A non-negative integer parameter, naming it when it is not one.
fn number(field: &str, value: Option<&str>) -> Result<Option<u64>, Problem> {
    value
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                Problem::bad_request(format!("{v:?} is not a non-negative integer")).field(field)
            })
        })
        .transpose()
}

fn hosted_tenant(
    state: &ApiState,
    caller: &Caller,
    named: Option<&str>,
) -> Result<AgencyId, Problem> {
    let tenant = caller.tenant(named)?;
    if !state.hosts(&tenant) {
        return Err(
            Problem::forbidden(format!("agency {tenant} is not hosted on this node"))
                .field("tenant"),
        );
    }
    Ok(tenant)
}

/// List the inbox.
///
/// Received documents and statuses in arrival order, after the cursor `after`. Pass the
/// answer's `next` as `after` to read on; an empty page means nothing newer yet.
#[utoipa::path(
    get,
    path = "/v1/inbox",
    tag = "inbox",
    params(InboxQuery),
    responses(
        (status = 200, description = "A page of the inbox", body = InboxPage),
        (status = 400, description = "Malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_inbox(
    State(state): State<ApiState>,
    caller: Caller,
    QueryParams(query): QueryParams<InboxQuery>,
) -> Result<Json<InboxPage>, Problem> {
    let tenant = hosted_tenant(&state, &caller, query.tenant.as_deref())?;
    let max = state.inner.config.max_page;
    let limit = number("limit", query.limit.as_deref())?
        .map_or(DEFAULT_PAGE, |n| usize::try_from(n).unwrap_or(usize::MAX));
    if limit == 0 || limit > max {
        return Err(Problem::bad_request(format!("1 to {max}")).field("limit"));
    }
    let from = match number("after", query.after.as_deref())? {
        Some(after) => after
            .checked_add(1)
            .ok_or_else(|| Problem::bad_request("too large").field("after"))?,
        None => 0,
    };
    let who = tenant.clone();
    let entries = state
        .blocking(move |s| s.inbox_page(&who, from, limit))
        .await?;
    let next = entries.last().map(|e| e.position);
    Ok(Json(InboxPage {
        tenant,
        entries,
        next,
    }))
}

struct Follow {
    state: ApiState,
    tenant: AgencyId,
    /// The next position to read.
    next: u64,
    notifications: tokio::sync::broadcast::Receiver<crate::driver::Delivered>,
    ready: std::collections::VecDeque<InboxEntry>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.state.inner.metrics.stream(-1);
    }
}

impl Follow {
    /// The next entry, reading the store after each notification or lag.
    async fn next_entry(&mut self) -> Option<Result<InboxEntry, Problem>> {
        loop {
            if let Some(entry) = self.ready.pop_front() {
                self.next = entry.position + 1;
                return Some(Ok(entry));
            }
            let (tenant, from) = (self.tenant.clone(), self.next);
            match self
                .state
                .blocking(move |s| s.inbox_page(&tenant, from, STREAM_PAGE))
                .await
            {
                Ok(page) if !page.is_empty() => {
                    self.ready.extend(page);
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            // Nothing to read: wait for a notification for this tenant (or a lag, after
            // which the store is read again).
            loop {
                match self.notifications.recv().await {
                    Ok(d) if d.tenant == self.tenant && d.position >= self.next => break,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }
}

fn entry_event(entry: &InboxEntry) -> Event {
    Event::default()
        .event("inbox")
        .id(entry.position.to_string())
        .json_data(entry)
        .unwrap_or_else(|_| Event::default().event("error"))
}

fn follow_stream(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(Some(follow), |follow| async move {
        let mut follow = follow?;
        match follow.next_entry().await? {
            Ok(entry) => Some((Ok(entry_event(&entry)), Some(follow))),
            Err(problem) => {
                // Tell the client why the stream ends, then end it.
                let event = Event::default()
                    .event("error")
                    .json_data(&problem)
                    .unwrap_or_else(|_| Event::default().event("error"));
                Some((Ok(event), None))
            }
        }
    })
}

/// Follow the inbox (server-sent events).
///
/// `text/event-stream` of `inbox` events, each an inbox entry as JSON with its position as
/// the event id, so a reconnecting client resumes with `Last-Event-ID`. Replays what
/// follows the cursor first, then each new entry as it becomes durable.
#[utoipa::path(
    get,
    path = "/v1/inbox/stream",
    tag = "inbox",
    params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this position")),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = InboxEntry),
        (status = 400, description = "Malformed parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many streams open", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn stream_inbox(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StreamQuery>,
) -> Result<Response, Problem> {
    let tenant = hosted_tenant(&state, &caller, query.tenant.as_deref())?;
    let last_event = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Problem::bad_request("an inbox position").field("last-event-id"))?,
        ),
        None => None,
    };
    let permit = Arc::clone(&state.inner.streams)
        .try_acquire_owned()
        .map_err(|_| Problem::too_many())?;
    // Subscribe before reading the store, so nothing falls between the two.
    let notifications = state.inner.driver.subscribe();
    let next = match number("after", query.after.as_deref())?.or(last_event) {
        Some(after) => after.saturating_add(1),
        None => {
            let who = tenant.clone();
            state.blocking(move |s| s.inbox_end(&who)).await?
        }
    };
    state.inner.metrics.stream(1);
    tracing::debug!(%tenant, next, "inbox stream opened");
    let follow = Follow {
        state: state.clone(),
        tenant,
        next,
        notifications,
        ready: Default::default(),
        _permit: permit,
    };
    Ok(Sse::new(follow_stream(follow))
        .keep_alive(KeepAlive::new().interval(state.inner.config.keep_alive))
        .into_response())
}
