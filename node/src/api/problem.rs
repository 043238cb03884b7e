//! The one error shape of the API: RFC 9457 problem details (`application/problem+json`),
//! with `field` naming the offending request field. Every failure becomes one, including
//! axum's own rejections and the router's 404 and 405 ([`problem_for_plain_errors`]).

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::driver::DriverError;
use crate::send::SendError;
use crate::store::StoreError;
use lienthong_protocol::relay::RelayError;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem. `type` is `urn:lienthong:problem:<slug>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:lienthong:problem:<slug>`, stable for programs to match on.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short, human-readable summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// The offending field (a JSON path such as `header.to[0].organ_id`, a query parameter
    /// or a header name), when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (429, 503).
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem of `status` with a slug, title and detail.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:lienthong:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Names the offending field.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 400: the request is malformed (syntax, bad parameter).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 401: no valid bearer token.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }

    /// 403: the token may not act for this tenant, or the tenant may not do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404: no such resource (or not visible to the caller's tenant).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 405: the path exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this path does not answer this method",
        )
    }

    /// 409: the request conflicts with the current state (a status transition, an
    /// idempotency key in use or reused for another request).
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 413: the body is larger than the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request body too large",
            format!("the body may be at most {limit} bytes"),
        )
    }

    /// 408: the client stopped sending its request.
    pub fn request_timeout(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            "Request body stalled",
            detail,
        )
    }

    /// 415: the body's media type is not accepted here.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            detail,
        )
        .field("content-type")
    }

    /// 422: well-formed, but a field's value is not acceptable.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "Invalid request",
            detail,
        )
        .field(field)
    }

    /// 429: too many requests in progress.
    pub fn too_many() -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-requests",
            "Too many requests",
            "too many requests are in progress; retry shortly",
        );
        p.retry_after = Some(1);
        p
    }

    /// 503: the node cannot serve this now (driver stopped, store failed, overloaded).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        p.retry_after = Some(5);
        p
    }

    /// 500: a bug or an unexpected failure; logged here, not detailed to the client.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the node could not answer; see its log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let json = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, PROBLEM_JSON)], json).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"lienthong\""),
            );
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body was not read: the connection cannot carry another request.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Stopped { .. } | StoreError::Closed { .. } => {
                tracing::error!(error = %e, "store unavailable");
                Self::unavailable("the node's store is not accepting writes")
            }
            e => Self::internal(e),
        }
    }
}

impl From<DriverError> for Problem {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::Refused(e) => e.into(),
            DriverError::Stopped => Self::unavailable("the node is shutting down"),
            DriverError::Store(e) => e.into(),
        }
    }
}

impl From<RelayError> for Problem {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::NotHosted(_) => Self::forbidden(e.to_string()),
            RelayError::Roster(_) => Self::invalid("to", e.to_string()),
            RelayError::Invalid(_) => Self::invalid("header", e.to_string()),
            RelayError::Busy(_) => Self::unavailable(e.to_string()),
            RelayError::UnknownDocument(_) => Self::not_found(e.to_string()),
            RelayError::Transition(_) => Self::conflict(e.to_string()).field("code"),
            RelayError::Store(_) => Self::unavailable(e.to_string()),
        }
    }
}

impl From<SendError> for Problem {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Document(lienthong_protocol::document::DocumentError::Field {
                field,
                problem,
            }) => Self::invalid(field, problem),
            SendError::Document(e) => Self::invalid("header", e.to_string()),
            SendError::UnknownRecipient(_) => Self::invalid("header.to", e.to_string()),
            SendError::Seal(e) => Self::invalid("attachments", e.to_string()),
            SendError::Store(e) => e.into(),
            SendError::Driver(e) => e.into(),
        }
    }
}

/// Turns every error response that is not already a problem (the router's 404 and 405,
/// a rejection that slipped through) into one, so no plain-text error leaves the API.
pub async fn problem_for_plain_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return response;
    }
    let (parts, body) = response.into_parts();
    // axum's own rejections carry a short text; keep it as the detail (bounded).
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&text).trim().to_owned();
    let problem = match status {
        StatusCode::NOT_FOUND => Problem::not_found("no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => Problem::method_not_allowed(),
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            status,
            "too-large",
            "Request body too large",
            "the body is larger than the limit",
        ),
        _ => Problem::new(
            status,
            "http",
            status.canonical_reason().unwrap_or("Error"),
            if detail.is_empty() {
                status.to_string()
            } else {
                detail
            },
        ),
    };
    let mut response = problem.into_response();
    for (name, value) in &parts.headers {
        if name == header::ALLOW {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}
