//! The hub's answer envelope, `{"status":"OK"|"FAIL","ErrorCode":..,"ErrorDesc":..}` plus
//! the operation's field, and [`HubError`]: one stable `ErrorCode` per kind of failure.
//!
//! Every answer is HTTP 200 with this JSON body (the SDK reads the envelope, not the
//! status line), except `downloadEdoc`'s success, whose body is the raw edXML.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::api::Problem;

/// Why a hub call failed. [`HubError::code`] is the `ErrorCode`, distinct per variant;
/// the `Display` text is the `ErrorDesc` (ids and element paths only: never document
/// contents or secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// A parameter header is missing or malformed.
    #[error("parameter XroadVnpt-{name}: {problem}")]
    BadParameter { name: String, problem: String },
    /// The path does not end with a known operation.
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// The operation does not answer this HTTP method.
    #[error("{operation} does not answer {method}")]
    MethodNotAllowed { operation: String, method: String },
    /// The body is larger than the limit.
    #[error("the body may be at most {limit} bytes")]
    TooLarge { limit: usize },
    /// The body stalled or was cut off.
    #[error("{0}")]
    Body(String),
    /// Too many calls in progress.
    #[error("too many calls in progress; retry shortly")]
    Busy,
    /// No signature headers.
    #[error(
        "missing {0}: every call is signed (XroadVnpt-sign-header, -sign-header-key, -hash-header)"
    )]
    Unauthenticated(&'static str),
    /// The systemid is not configured on this node.
    #[error("unknown systemid {0:?}")]
    UnknownSystem(String),
    /// The HMAC does not verify with the system's secret.
    #[error("XroadVnpt-hash-header does not match the signed headers (wrong secret?)")]
    BadSignature,
    /// The signed headers differ from those received, or a parameter is unsigned.
    #[error("signed headers: {0}")]
    SignedHeaders(String),
    /// The timestamp is malformed or too far from the node's clock.
    #[error("XroadVnpt-timestamp: {0}")]
    Timestamp(String),
    /// `from` (or the edXML sender) is not an agency this system may act for.
    #[error("agency {agency} is not one this system may act for")]
    NotYourAgency { agency: String },
    /// The edXML does not parse or does not validate.
    #[error("malformed edXML: {0}")]
    MalformedEdxml(String),
    /// `hash-file` differs from the body's SHA-256.
    #[error("XroadVnpt-hash-file does not match the SHA-256 of the body")]
    HashFile,
    /// `messagetype` says one thing and the edXML holds another.
    #[error("messagetype {declared} but the edXML holds a {found}")]
    MessageType {
        declared: String,
        found: &'static str,
    },
    /// A recipient is not an active member, or is the sender itself.
    #[error("recipient {agency}: {problem}")]
    Recipient { agency: String, problem: String },
    /// This DocumentId was sent before with other content.
    #[error("DocumentId {0:?} was sent before with different content")]
    DocumentIdReused(String),
    /// A revoke, update or replace names an earlier document this sender never sent.
    #[error("no earlier document {0:?} sent by this agency")]
    UnknownEarlier(String),
    /// No such document or transmission for this system's agencies.
    #[error("unknown document: {0}")]
    UnknownDocument(String),
    /// The status may not follow the current one.
    #[error("status refused: {0}")]
    StatusRefused(String),
    /// Membership changes go through the roster ceremony.
    #[error(
        "membership changes go through the federation's k-of-n roster ceremony, not this call: \
         the agency's operator runs `lienthong init` and sends member.json to the central office, \
         whose key holders sign the change (lienthong-bootstrap roster propose --admit or --revoke, \
         then roster sign and roster publish); every node applies the new epoch when it is published"
    )]
    Membership,
    /// The request is well-formed but not acceptable (a value the node refuses).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The node cannot serve this now (store stopped, shutting down, overloaded).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A bug or unexpected failure (logged at the node).
    #[error("the node could not answer; see its log")]
    Internal,
}

impl HubError {
    /// The `ErrorCode`: stable, distinct per kind.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadParameter { .. } => "100",
            Self::UnknownOperation(_) => "101",
            Self::MethodNotAllowed { .. } => "102",
            Self::TooLarge { .. } => "103",
            Self::Busy => "104",
            Self::Body(_) => "105",
            Self::Unauthenticated(_) => "200",
            Self::UnknownSystem(_) => "201",
            Self::BadSignature => "202",
            Self::SignedHeaders(_) => "203",
            Self::Timestamp(_) => "204",
            Self::NotYourAgency { .. } => "205",
            Self::MalformedEdxml(_) => "301",
            Self::HashFile => "302",
            Self::MessageType { .. } => "303",
            Self::Recipient { .. } => "304",
            Self::DocumentIdReused(_) => "305",
            Self::UnknownEarlier(_) => "306",
            Self::UnknownDocument(_) => "404",
            Self::StatusRefused(_) => "409",
            Self::Membership => "410",
            Self::Invalid(_) => "422",
            Self::Unavailable(_) => "503",
            Self::Internal => "500",
        }
    }

    pub(crate) fn param(name: &str, problem: impl Into<String>) -> Self {
        Self::BadParameter {
            name: name.to_owned(),
            problem: problem.into(),
        }
    }

    /// A failure to log at error (not detailed to the client).
    pub(crate) fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "hub call failed");
        Self::Internal
    }
}

impl From<Problem> for HubError {
    /// The API's internals answer [`Problem`]s (already logged when internal).
    fn from(p: Problem) -> Self {
        match p.status {
            404 => Self::UnknownDocument(p.detail),
            409 => Self::StatusRefused(p.detail),
            403 => Self::Invalid(p.detail),
            400 | 422 => Self::Invalid(p.detail),
            429 | 503 => Self::Unavailable(p.detail),
            _ => Self::Internal,
        }
    }
}

impl From<crate::store::StoreError> for HubError {
    fn from(e: crate::store::StoreError) -> Self {
        Problem::from(e).into()
    }
}

/// `{"status":"OK","ErrorCode":"0","ErrorDesc":"",...fields}`.
pub fn ok(fields: Map<String, Value>) -> Response {
    let mut body = Map::new();
    body.insert("status".into(), "OK".into());
    body.insert("ErrorCode".into(), "0".into());
    body.insert("ErrorDesc".into(), "".into());
    body.extend(fields);
    json(&Value::Object(body))
}

/// The OK envelope with one field.
pub fn ok_with(name: &str, value: Value) -> Response {
    let mut fields = Map::new();
    fields.insert(name.to_owned(), value);
    ok(fields)
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert("status".into(), "FAIL".into());
        body.insert("ErrorCode".into(), self.code().into());
        body.insert("ErrorDesc".into(), self.to_string().into());
        json(&Value::Object(body))
    }
}

fn json(value: &Value) -> Response {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_kind_has_its_own_code() {
        let all = [
            HubError::param("from", "x"),
            HubError::UnknownOperation("x".into()),
            HubError::MethodNotAllowed {
                operation: "x".into(),
                method: "PUT".into(),
            },
            HubError::TooLarge { limit: 1 },
            HubError::Busy,
            HubError::Body("x".into()),
            HubError::Unauthenticated("x"),
            HubError::UnknownSystem("x".into()),
            HubError::BadSignature,
            HubError::SignedHeaders("x".into()),
            HubError::Timestamp("x".into()),
            HubError::NotYourAgency { agency: "x".into() },
            HubError::MalformedEdxml("x".into()),
            HubError::HashFile,
            HubError::MessageType {
                declared: "x".into(),
                found: "y",
            },
            HubError::Recipient {
                agency: "x".into(),
                problem: "y".into(),
            },
            HubError::DocumentIdReused("x".into()),
            HubError::UnknownEarlier("x".into()),
            HubError::UnknownDocument("x".into()),
            HubError::StatusRefused("x".into()),
            HubError::Membership,
            HubError::Invalid("x".into()),
            HubError::Unavailable("x".into()),
            HubError::Internal,
        ];
        let mut codes: Vec<&str> = all.iter().map(HubError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(!codes.contains(&"0"));
    }
}
