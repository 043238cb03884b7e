//! Bearer tokens per tenant: stored as SHA-256 hashes, compared in constant time, each
//! acting only for the tenants it was issued for.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use lienthong_protocol::agency::AgencyId;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::ApiState;
use super::problem::Problem;

/// Longest bearer token accepted, in bytes (anything longer is refused unhashed).
pub const MAX_TOKEN_LEN: usize = 512;

/// The table of API tokens: SHA-256 of each token and the tenants it acts for. The
/// tokens themselves are never stored.
#[derive(Clone, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Vec<AgencyId>)>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenTable")
            .field("tokens", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl TokenTable {
    /// An empty table (every request is refused with 401).
    pub fn new() -> Self {
        Self::default()
    }

    /// The SHA-256 of a token, as stored in the table (and in configuration files).
    pub fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// Lets the token whose SHA-256 is `hash` act for `tenant` (a token may act for several).
    pub fn insert(&mut self, hash: [u8; 32], tenant: AgencyId) {
        match self.entries.iter_mut().find(|(h, _)| *h == hash) {
            Some((_, tenants)) if !tenants.contains(&tenant) => tenants.push(tenant),
            Some(_) => {}
            None => self.entries.push((hash, vec![tenant])),
        }
    }

    /// Builder form of [`Self::insert`].
    pub fn with(mut self, hash: [u8; 32], tenant: AgencyId) -> Self {
        self.insert(hash, tenant);
        self
    }

    /// The tenants `token` acts for (empty if unknown). Every entry is compared, in
    /// constant time, whatever matches.
    pub fn tenants(&self, token: &str) -> Vec<AgencyId> {
        let presented = Self::hash(token);
        let mut found: Option<&Vec<AgencyId>> = None;
        for (hash, tenants) in &self.entries {
            let same: Choice = hash.ct_eq(&presented);
            if bool::from(same) {
                found = Some(tenants);
            }
        }
        found.cloned().unwrap_or_default()
    }
}

/// The authenticated caller: the tenants its token acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    tenants: Arc<[AgencyId]>,
}

impl Caller {
    /// The tenants this caller may act for.
    pub fn tenants(&self) -> &[AgencyId] {
        &self.tenants
    }

    /// Checks that the caller may act for `tenant` (403 otherwise).
    pub fn may_act_for(&self, tenant: &AgencyId) -> Result<(), Problem> {
        if self.tenants.contains(tenant) {
            Ok(())
        } else {
            Err(
                Problem::forbidden(format!("this token does not act for agency {tenant}"))
                    .field("tenant"),
            )
        }
    }

    /// The tenant a request acts for: the one named (which the token must cover), or the
    /// token's only tenant. A token for several tenants must name one.
    pub fn tenant(&self, named: Option<&str>) -> Result<AgencyId, Problem> {
        match named {
            Some(name) => {
                let tenant = AgencyId::parse_any(name)
                    .map_err(|e| Problem::bad_request(e.to_string()).field("tenant"))?;
                self.may_act_for(&tenant)?;
                Ok(tenant)
            }
            None => match &*self.tenants {
                [only] => Ok(only.clone()),
                _ => Err(Problem::bad_request(
                    "this token acts for several agencies: name one with `tenant`",
                )
                .field("tenant")),
            },
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("send `Authorization: Bearer <token>`"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN)
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header is not `Bearer <token>`")
                    .field("authorization")
            })?;
        let tenants = state.inner.tokens.tenants(token);
        if tenants.is_empty() {
            return Err(Problem::unauthorized("unknown token").field("authorization"));
        }
        Ok(Caller {
            tenants: tenants.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_act_only_for_their_tenants() {
        let a = AgencyId::parse("000.00.00.H41").unwrap();
        let b = AgencyId::parse("000.00.01.H41").unwrap();
        let table = TokenTable::new()
            .with(TokenTable::hash("ta"), a.clone())
            .with(TokenTable::hash("both"), a.clone())
            .with(TokenTable::hash("both"), b.clone());
        assert_eq!(table.tenants("ta"), vec![a.clone()]);
        assert_eq!(table.tenants("both"), vec![a, b]);
        assert!(table.tenants("tb").is_empty());
        assert!(format!("{table:?}").contains("tokens: 2"));
    }
}
