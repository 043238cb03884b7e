//! Extractors whose every rejection is a [`Problem`]: a JSON body, or a body that may be
//! JSON or edXML (media type checked, size checked from `Content-Length` before reading and
//! never buffered past the limit, errors naming the offending field), path and query
//! parameters.

use axum::body::Bytes;

use crate::http_body::RequestBodyError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiState;
use super::problem::Problem;

/// A JSON body, deserialized with the path of the offending field on error.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// Largest request body whose decoding runs on the async worker that read it (see
/// [`ApiState::blocking_unless_small`]).
pub(crate) const INLINE_BODY_BYTES: usize = 64 * 1024;

/// Whether the request's body was at most [`INLINE_BODY_BYTES`] by its `content-length`.
pub(crate) fn is_small_body(headers: &header::HeaderMap) -> bool {
    crate::http_body::declared_length(headers).is_some_and(|len| len <= INLINE_BODY_BYTES as u64)
}

/// Reads a request body of at most `limit` bytes: refused from `Content-Length` before
/// reading, and while reading as soon as it goes past the limit.
pub async fn read_body(request: Request, limit: usize) -> Result<Bytes, Problem> {
    if crate::http_body::declared_length(request.headers()).is_some_and(|len| len > limit as u64) {
        return Err(Problem::too_large(limit));
    }
    crate::http_body::read_request(
        request.into_body(),
        limit,
        crate::http_body::REQUEST_BODY_IDLE,
    )
    .await
    .map_err(|e| match e {
        RequestBodyError::TooLarge { limit } => Problem::too_large(limit),
        e @ (RequestBodyError::Stalled { .. } | RequestBodyError::TooSlow { .. }) => {
            Problem::request_timeout(e.to_string())
        }
        e @ RequestBodyError::Broken(_) => Problem::bad_request(e.to_string()),
    })
}

/// The request's media type, lowercased, without parameters (`application/json`).
fn media_type(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// Checks that the request's media type is `application/json` (parameters allowed).
pub fn require_json(request: &Request) -> Result<(), Problem> {
    match media_type(request).as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(Problem::unsupported_media_type(format!(
            "expected `application/json`, got `{other}`"
        ))),
        None => Err(Problem::unsupported_media_type(
            "expected `Content-Type: application/json`",
        )),
    }
}

/// Media types read as edXML.
pub const EDXML_MEDIA_TYPES: [&str; 2] = ["application/xml", "text/xml"];

/// A body that is either JSON (`application/json`) or an edXML (QCVN 102:2016) message
/// (`application/xml` or `text/xml`), read within the body limit; any other media type is a
/// 415 naming both. The edXML bytes are parsed by the handler, off the async workers.
#[derive(Debug)]
pub enum JsonOrEdxml<T> {
    Json(T),
    Edxml(Bytes),
}

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonOrEdxml<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Problem> {
        let media = media_type(&request);
        let limit = state.inner.config.max_body_bytes;
        match media.as_deref() {
            Some("application/json") => {
                let bytes = read_body(request, limit).await?;
                parse_json(&bytes).map(JsonOrEdxml::Json)
            }
            Some(m) if EDXML_MEDIA_TYPES.contains(&m) => {
                read_body(request, limit).await.map(JsonOrEdxml::Edxml)
            }
            Some(other) => Err(Problem::unsupported_media_type(format!(
                "expected `application/json` or edXML as `application/xml`, got `{other}`"
            ))),
            None => Err(Problem::unsupported_media_type(
                "expected `Content-Type: application/json` or `application/xml` (edXML)",
            )),
        }
    }
}

/// Deserializes JSON, naming the offending field: 400 for broken syntax, 422 for a
/// well-formed body whose shape or values are wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    // Plain serde_json first: tracking the path costs every request an allocation per
    // field, and only a refused body needs it (parsed again below to name the field).
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => parse_json_naming_the_field(bytes),
    }
}

/// [`parse_json`] with the path to the offending field tracked (`serde_path_to_error`):
/// its way for a refused body (public for the `api_decode` bench).
pub fn parse_json_naming_the_field<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => Problem::invalid(
                if path == "." { "body".to_owned() } else { path },
                inner.to_string(),
            ),
            _ => Problem::bad_request(format!("the body is not valid JSON: {inner}")).field("body"),
        }
    })?;
    de.end()
        .map_err(|e| Problem::bad_request(format!("trailing data after the JSON body: {e}")))?;
    Ok(value)
}

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, Problem> {
        require_json(&request)?;
        let bytes = read_body(request, state.inner.config.max_body_bytes).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Query parameters; a bad or missing one is a 400 problem naming it.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded_de(query);
        match de {
            Ok(value) => Ok(QueryParams(value)),
            Err((field, detail)) => Err(Problem::bad_request(detail).field(field)),
        }
    }
}

fn serde_urlencoded_de<T: DeserializeOwned>(query: &str) -> Result<T, (String, String)> {
    // axum's own Query extractor, with its rejection's text kept as the detail.
    let uri: axum::http::Uri = format!("/?{query}").parse().map_err(|_| {
        (
            "query".to_owned(),
            "the query string is malformed".to_owned(),
        )
    })?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| {
            let text = e.body_text();
            let field = text
                .split("field `")
                .nth(1)
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("query")
                .to_owned();
            (field, text)
        })
}

/// Path parameters; a bad one is a 400 problem.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| Problem::bad_request(e.body_text()).field("path"))
    }
}
