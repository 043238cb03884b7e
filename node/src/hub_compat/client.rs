//! A client that builds calls exactly as the hub's SDK does (`XroadVnpt-*` headers, the
//! signed-header JSON, its key list and HMAC, the SDK's body shapes): for tests, and to
//! check a node's listener from the command line of a tool.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::auth::{PREFIX, sign};
use super::time::format_sdk_timestamp;
use crate::driver::now_ms;
use sha2::{Digest, Sha256};

/// The SDK's `hash-file`: each byte of the SHA-256 as `%x` (no zero padding, so `0e` is
/// written `e`).
pub fn hash_file(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:x}"))
        .collect()
}

/// Largest answer read.
const MAX_ANSWER: usize = super::MAX_BODY * 2;

/// Why a call could not be made or read (a FAIL answer is not an error: see
/// [`HubAnswer`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("header {0:?} cannot be sent")]
    Header(String),
    #[error("answer: {0}")]
    Answer(String),
}

/// An answer: its HTTP status and body.
#[derive(Debug, Clone)]
pub struct HubAnswer {
    pub http_status: u16,
    pub body: Vec<u8>,
}

impl HubAnswer {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Answer(e.to_string()))
    }
}

/// Calls a hub-compatible endpoint as one system.
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    endpoint: String,
    systemid: String,
    secret: String,
    /// Overrides the clock of `XroadVnpt-timestamp` (tests).
    pub clock_ms: Option<u64>,
}

impl HubClient {
    /// A client of `endpoint` (e.g. `http://127.0.0.1:8090/`), as `systemid` with `secret`.
    pub fn new(endpoint: &str, systemid: &str, secret: &str) -> Result<Self, ClientError> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            systemid: systemid.to_owned(),
            secret: secret.to_owned(),
            clock_ms: None,
        })
    }

    /// The same client signing with another secret (tests of refusals).
    pub fn with_secret(&self, secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            ..self.clone()
        }
    }

    /// The same client sending another systemid.
    pub fn with_systemid(&self, systemid: &str) -> Self {
        Self {
            systemid: systemid.to_owned(),
            ..self.clone()
        }
    }

    /// The headers of a call with these parameters (keys without the prefix): each as
    /// `XroadVnpt-<key>`, plus systemid and timestamp, all signed.
    pub fn headers(&self, params: &[(&str, &str)]) -> Vec<(String, String)> {
        let stamp = format_sdk_timestamp(self.clock_ms.unwrap_or_else(now_ms));
        let mut named: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
            .collect();
        named.push((format!("{PREFIX}systemid"), self.systemid.clone()));
        named.push((format!("{PREFIX}timestamp"), stamp));
        let (json, keys, hash) = sign(&self.secret, &named);
        named.push((format!("{PREFIX}sign-header"), json));
        named.push((format!("{PREFIX}sign-header-key"), keys));
        named.push((format!("{PREFIX}hash-header"), hash));
        named
    }

    /// Sends prepared headers and body.
    pub async fn raw(
        &self,
        method: Method,
        operation: &str,
        headers: &[(String, String)],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<HubAnswer, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}/{operation}", self.endpoint))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes())
                .map_err(|_| ClientError::Header(name.clone()))?;
            request = request.header(name.as_str(), value);
        }
        let response = request.send().await?;
        let http_status = response.status().as_u16();
        let body = crate::http_body::read_limited(response, MAX_ANSWER)
            .await
            .map_err(|e| ClientError::Answer(e.to_string()))?;
        Ok(HubAnswer { http_status, body })
    }

    /// A JSON operation, POSTed with the literal body `{}` as the SDK does.
    pub async fn call(
        &self,
        operation: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        self.raw(
            Method::POST,
            operation,
            &self.headers(params),
            "application/json",
            b"{}".to_vec(),
        )
        .await?
        .json()
    }

    /// `sendEdoc` of `from` with an edXML file: octet-stream body followed by CRLF, the
    /// `hash-file` of the file.
    pub async fn send_edoc(
        &self,
        from: &str,
        messagetype: &str,
        edxml: &[u8],
    ) -> Result<Value, ClientError> {
        let hash = hash_file(edxml);
        let headers = self.headers(&[
            ("from", from),
            ("servicetype", "eDoc"),
            ("messagetype", messagetype),
            ("hash-file", &hash),
        ]);
        let mut body = edxml.to_vec();
        body.extend_from_slice(b"\r\n");
        self.raw(
            Method::POST,
            "sendEdoc",
            &headers,
            "application/octet-stream",
            body,
        )
        .await?
        .json()
    }

    /// `downloadEdoc` (GET): the raw edXML, or the FAIL envelope's body.
    pub async fn download_edoc(&self, doc_id: &str) -> Result<HubAnswer, ClientError> {
        self.raw(
            Method::GET,
            "downloadEdoc",
            &self.headers(&[("docId", doc_id)]),
            "application/x-www-form-urlencoded",
            Vec::new(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_file_drops_zero_padding() {
        // SHA-256("abc") = ba7816bf 8f01cfea … b00361a3 … f20015ad: 0x01 is written "1",
        // 0x00 "0", 0x03 "3".
        assert_eq!(
            hash_file(b"abc"),
            "ba7816bf8f1cfea414140de5dae2223b0361a396177a9cb410ff61f2015ad"
        );
    }
}
