//! Authentication of hub calls as the SDK signs them: `XroadVnpt-sign-header` is a
//! compact JSON object of the signed `XroadVnpt-*` headers, `XroadVnpt-sign-header-key`
//! their keys joined by `;`, and `XroadVnpt-hash-header` the lowercase hex HMAC-SHA256 of
//! the sign-header string's UTF-8 bytes keyed with the system's shared secret.
//!
//! [`authenticate`] checks, in this order: the signature headers are present
//! ([`HubError::Unauthenticated`]); the systemid is configured ([`HubError::UnknownSystem`]);
//! the HMAC verifies in constant time ([`HubError::BadSignature`]); the signed object
//! names exactly the keys listed, each signed value equals the header received, and every
//! parameter header received is signed ([`HubError::SignedHeaders`]); the signed
//! timestamp is well-formed and within the allowed skew ([`HubError::Timestamp`]).
//! Keys are matched case-insensitively and may be written with or without the
//! `XroadVnpt-` prefix.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::reply::HubError;
use super::time::parse_sdk_timestamp;
use super::{HubConfig, HubSystem};

/// The prefix of every parameter header.
pub const PREFIX: &str = "XroadVnpt-";
/// The signed JSON object.
pub const SIGN_HEADER: &str = "sign-header";
/// Its keys joined by `;`.
pub const SIGN_HEADER_KEY: &str = "sign-header-key";
/// The HMAC-SHA256, lowercase hex.
pub const HASH_HEADER: &str = "hash-header";

/// Longest signed object, in bytes.
const MAX_SIGN_HEADER: usize = 16 * 1024;
/// Most parameter headers in one call.
const MAX_PARAMS: usize = 64;

/// The parameter headers of an authenticated call, by lowercase key without the prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<String, String>,
}

impl Params {
    /// A parameter's value (`key` without the prefix, any case); empty values read as
    /// absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(&key.to_ascii_lowercase())
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub fn require(&self, key: &str) -> Result<&str, HubError> {
        self.get(key).ok_or_else(|| HubError::param(key, "missing"))
    }
}

/// The lowercase key without the `XroadVnpt-` prefix, if `name` has it.
fn strip_prefix(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    lower
        .strip_prefix(&PREFIX.to_ascii_lowercase())
        .map(str::to_owned)
}

/// A header value as text: UTF-8, else Latin-1 (as Java writes non-ASCII header values).
fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// The lowercase hex HMAC-SHA256 of `message` keyed with `secret` (both UTF-8).
pub fn hmac_hex(secret: &str, message: &str) -> String {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
}

/// Signs `params` (full header names, e.g. `XroadVnpt-from`, with their values) as the
/// SDK does: `(sign-header JSON, sign-header-key, hash-header)`.
pub fn sign(secret: &str, params: &[(String, String)]) -> (String, String, String) {
    let object: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let json = serde_json::Value::Object(object).to_string();
    let keys = params
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let hash = hmac_hex(secret, &json);
    (json, keys, hash)
}

/// Authenticates a call: the system it comes from and its parameters.
pub fn authenticate<'c>(
    config: &'c HubConfig,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<(&'c HubSystem, Params), HubError> {
    // Every XroadVnpt-* header, by key without the prefix.
    let mut received: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = strip_prefix(name.as_str()) {
            if received.len() >= MAX_PARAMS {
                return Err(HubError::param(&key, "too many XroadVnpt headers"));
            }
            if received
                .insert(key.clone(), header_text(value.as_bytes()))
                .is_some()
            {
                return Err(HubError::param(&key, "given more than once"));
            }
        }
    }
    let sign_header = received
        .remove(SIGN_HEADER)
        .ok_or(HubError::Unauthenticated("XroadVnpt-sign-header"))?;
    let sign_keys = received
        .remove(SIGN_HEADER_KEY)
        .ok_or(HubError::Unauthenticated("XroadVnpt-sign-header-key"))?;
    let hash = received
        .remove(HASH_HEADER)
        .ok_or(HubError::Unauthenticated("XroadVnpt-hash-header"))?;
    let systemid = received
        .get("systemid")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HubError::param("systemid", "missing"))?;
    let system = config
        .system(&systemid)
        .ok_or_else(|| HubError::UnknownSystem(systemid.clone()))?;

    if sign_header.len() > MAX_SIGN_HEADER {
        return Err(HubError::SignedHeaders(format!(
            "XroadVnpt-sign-header is longer than {MAX_SIGN_HEADER} bytes"
        )));
    }
    let tag = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hash.trim().as_bytes())
        .map_err(|_| HubError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(system.secret().as_bytes())
        .map_err(|_| HubError::BadSignature)?;
    mac.update(sign_header.as_bytes());
    // Constant-time comparison (subtle, inside `verify_slice`).
    mac.verify_slice(&tag).map_err(|_| HubError::BadSignature)?;

    let signed: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&sign_header)
        .map_err(|e| {
            HubError::SignedHeaders(format!("XroadVnpt-sign-header is not a JSON object: {e}"))
        })?;
    let mut signed_values: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in &signed {
        let bare = strip_prefix(key).unwrap_or_else(|| key.to_ascii_lowercase());
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        if signed_values.insert(bare.clone(), text).is_some() {
            return Err(HubError::SignedHeaders(format!("{bare} is signed twice")));
        }
    }
    let mut listed: Vec<String> = sign_keys
        .split(';')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| strip_prefix(k).unwrap_or_else(|| k.to_ascii_lowercase()))
        .collect();
    listed.sort();
    listed.dedup();
    if !listed.iter().eq(signed_values.keys()) {
        return Err(HubError::SignedHeaders(
            "XroadVnpt-sign-header-key does not list the keys of XroadVnpt-sign-header".into(),
        ));
    }
    for (key, value) in &signed_values {
        match received.get(key) {
            Some(got) if got == value => {}
            Some(_) => {
                return Err(HubError::SignedHeaders(format!(
                    "XroadVnpt-{key} differs from its signed value"
                )));
            }
            None => {
                return Err(HubError::SignedHeaders(format!(
                    "XroadVnpt-{key} is signed but was not sent"
                )));
            }
        }
    }
    if let Some(unsigned) = received.keys().find(|k| !signed_values.contains_key(*k)) {
        return Err(HubError::SignedHeaders(format!(
            "XroadVnpt-{unsigned} was sent but not signed"
        )));
    }
    for required in ["systemid", "timestamp"] {
        if !signed_values.contains_key(required) {
            return Err(HubError::SignedHeaders(format!(
                "XroadVnpt-{required} must be signed"
            )));
        }
    }
    let stamp = received.get("timestamp").map_or("", |s| s.as_str());
    let at = parse_sdk_timestamp(stamp)
        .ok_or_else(|| HubError::Timestamp(format!("{stamp:?} is not ddMMyyyy'T'HHmmss+SSSS")))?;
    let skew = at.abs_diff(now_ms);
    if skew > config.max_clock_skew_ms {
        return Err(HubError::Timestamp(format!(
            "{stamp:?} is {} s away from the node's clock; at most {} s allowed",
            skew / 1000,
            config.max_clock_skew_ms / 1000
        )));
    }
    Ok((system, Params { values: received }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::http::HeaderValue;

    use super::*;
    use crate::hub_compat::time::format_sdk_timestamp;

    const NOW: u64 = 1_795_427_702_123;

    fn config() -> HubConfig {
        HubConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![HubSystem::new(
                "dms".into(),
                zeroize::Zeroizing::new("s3cret".into()),
                vec![lienthong_protocol::agency::AgencyId::parse("000.00.00.H41").unwrap()],
            )],
        )
    }

    fn headers(secret: &str, params: &[(&str, &str)], prefixed_keys: bool) -> HeaderMap {
        let named: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| {
                let key = if prefixed_keys {
                    format!("{PREFIX}{k}")
                } else {
                    (*k).to_owned()
                };
                (key, (*v).to_owned())
            })
            .collect();
        let (json, keys, hash) = sign(secret, &named);
        let mut map = HeaderMap::new();
        for (k, v) in params {
            map.insert(
                axum::http::HeaderName::from_bytes(format!("{PREFIX}{k}").as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map.insert(
            "XroadVnpt-sign-header",
            HeaderValue::from_str(&json).unwrap(),
        );
        map.insert(
            "XroadVnpt-sign-header-key",
            HeaderValue::from_str(&keys).unwrap(),
        );
        map.insert(
            "XroadVnpt-hash-header",
            HeaderValue::from_str(&hash).unwrap(),
        );
        map
    }

    #[test]
    fn signed_calls_authenticate_with_or_without_the_prefix_in_keys() {
        let stamp = format_sdk_timestamp(NOW);
        let params = [
            ("systemid", "dms"),
            ("timestamp", stamp.as_str()),
            ("from", "000.00.00.H41"),
        ];
        let cfg = config();
        for prefixed in [true, false] {
            let (system, got) =
                authenticate(&cfg, &headers("s3cret", &params, prefixed), NOW).unwrap();
            assert_eq!(system.systemid(), "dms");
            assert_eq!(got.get("FROM"), Some("000.00.00.H41"));
        }
    }

    #[test]
    fn each_failure_has_its_kind() {
        let cfg = config();
        let stamp = format_sdk_timestamp(NOW);
        let params = [("systemid", "dms"), ("timestamp", stamp.as_str())];
        let code = |map: &HeaderMap, now| authenticate(&cfg, map, now).unwrap_err().code();

        assert_eq!(code(&headers("wrong", &params, true), NOW), "202");
        assert_eq!(code(&HeaderMap::new(), NOW), "200");

        let mut tampered = headers("s3cret", &params, true);
        tampered.insert("XroadVnpt-systemid", HeaderValue::from_static("dms2"));
        assert_eq!(code(&tampered, NOW), "201");

        let mut tampered = headers("s3cret", &params, true);
        tampered.insert(
            "XroadVnpt-timestamp",
            HeaderValue::from_static("01012026T000000+0000"),
        );
        assert_eq!(code(&tampered, NOW), "203");

        let mut unsigned = headers("s3cret", &params, true);
        unsigned.insert("XroadVnpt-docId", HeaderValue::from_static("x"));
        assert_eq!(code(&unsigned, NOW), "203");

        let mut keys = headers("s3cret", &params, true);
        keys.insert(
            "XroadVnpt-sign-header-key",
            HeaderValue::from_static("XroadVnpt-systemid"),
        );
        assert_eq!(code(&keys, NOW), "203");

        let no_stamp = headers("s3cret", &[("systemid", "dms")], true);
        assert_eq!(code(&no_stamp, NOW), "203");

        assert_eq!(
            code(&headers("s3cret", &params, true), NOW + 2 * 86_400_000),
            "204"
        );
    }
}
