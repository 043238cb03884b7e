//! Documents: send (and update, replace, revoke, which are sends that act on an earlier
//! document), open a received document, its header and attachments, post a status, recall,
//! trace.
//!
//! # Idempotency
//!
//! A send is identified by its `Idempotency-Key` header or, without one, by the DMS's own
//! DocumentId, per sending tenant. The first send's content id is recorded durably (column
//! `meta`, key `api/idempotency ‖ 0 ‖ tenant ‖ 0 ‖ k:|d: ‖ key`, value content id ‖
//! SHA-256 of the request) in the same batch as the envelope, so it is durable exactly when
//! the envelope is, before the answer: a retry gets the same content id (`duplicate: true`)
//! instead of a second document, even after a crash; the same key with a different request
//! is a 409. Two requests with one key at the same time: the second gets 409 until the
//! first has answered.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::{BusinessType, Document, Organization, Reference};
use lienthong_protocol::edxml::{self, EdxmlError, StaffInfo, StatusMessage};
use lienthong_protocol::envelope::{Kind, Routing};
use lienthong_protocol::relay::StatusPost;
use lienthong_protocol::relay::records::{self, StatusRecord, id_agency_key};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::{Content, MetaRecord, RelayError};
use lienthong_protocol::status::{DetailError, Stage, StatusCode as Code, StatusDetail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;

use super::ApiState;
use super::auth::Caller;
use super::dto::{
    AttachmentInfo, BusinessJson, DocumentResponse, HeaderJson, RecallRequest, RecipientTrace,
    SendRequest, SendResponse, StatusRequest, StatusResponse, TraceEntry, TraceResponse, rfc3339,
};
use super::extract::{JsonBody, JsonOrEdxml, PathParams, QueryParams};
use super::open::Party;
use super::problem::Problem;
use crate::send::{InProgress, SendPath};

/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
const IDEMPOTENCY_PREFIX: &[u8] = b"api/idempotency\0";

/// `?tenant=`: the agency a request acts for (optional when the token acts for one).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// The agency this request acts for; required when the token acts for several.
    pub tenant: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct IdPath {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct AttachmentPath {
    pub id: String,
    pub n: String,
}

fn content_id(id: &str) -> Result<ContentId, Problem> {
    ContentId::parse(id).map_err(|e| Problem::bad_request(format!("{id:?}: {e}")).field("id"))
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Document => "document",
        Kind::Status => "status",
        Kind::Revoke => "revoke",
        Kind::Update => "update",
        Kind::Replace => "replace",
        Kind::Roster => "roster",
    }
}

pub(crate) fn kind_str(kind: Kind) -> String {
    kind_name(kind).to_owned()
}

fn idempotency_key(
    headers: &HeaderMap,
    tenant: &AgencyId,
    document_id: &str,
) -> Result<Vec<u8>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(document_id_key(tenant, document_id));
    };
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_IDEMPOTENCY_KEY
        || !bytes.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(Problem::bad_request(format!(
            "1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        ))
        .field("idempotency-key"));
    }
    let mut key = IDEMPOTENCY_PREFIX.to_vec();
    key.extend_from_slice(tenant.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(b"k:");
    key.extend_from_slice(bytes);
    Ok(key)
}

const ACT_ON_ROUTES: &str =
    "use /v1/documents/{id}/revoke, /update or /replace to act on an earlier document";

/// The form a send arrived in: errors name the field as that form spells it.
#[derive(Debug, Clone, Copy)]
enum SendForm {
    Json,
    Edxml,
}

impl SendForm {
    fn of<T>(body: &JsonOrEdxml<T>) -> Self {
        match body {
            JsonOrEdxml::Json(_) => Self::Json,
            JsonOrEdxml::Edxml(_) => Self::Edxml,
        }
    }

    fn sender_field(self) -> &'static str {
        match self {
            Self::Json => "header.from.organ_id",
            Self::Edxml => "MessageHeader/From/OrganId",
        }
    }

    fn business_field(self) -> &'static str {
        match self {
            Self::Json => "header.business",
            Self::Edxml => "TraceHeaderList/Bussiness/BussinessDocType",
        }
    }

    fn to_field(self, i: usize) -> String {
        match self {
            Self::Json => format!("header.to[{i}].organ_id"),
            Self::Edxml => format!("MessageHeader/To[{}]/OrganId", i + 1),
        }
    }
}

/// An edXML input refused: 422 naming the element (the body, for XML that is not
/// well-formed).
pub(crate) fn edxml_problem(e: EdxmlError) -> Problem {
    let field = e.path().unwrap_or("body").to_owned();
    Problem::invalid(field, e.to_string())
}

/// Checks that `caller` may send as `from` and, for a revoke, update or replace, that
/// `from` sent the earlier document.
async fn authorize(
    state: &ApiState,
    caller: &Caller,
    from: &AgencyId,
    refers_to: Option<ContentId>,
    form: SendForm,
) -> Result<(), Problem> {
    caller
        .may_act_for(from)
        .map_err(|p| p.field(form.sender_field()))?;
    let Some(earlier) = refers_to else {
        return Ok(());
    };
    let tenant = from.clone();
    let (_, party) = state
        .blocking(move |s| s.document_envelope(&earlier, &tenant))
        .await?;
    if party != Party::Sender {
        return Err(Problem::forbidden(format!(
            "only the sender of {earlier} may revoke, update or replace it"
        )));
    }
    Ok(())
}

/// Validates, seals and submits a document of `kind` (acting on `refers_to` for revoke,
/// update and replace, which only that document's sender may do); answers once it is
/// durable. The body is JSON or an edXML envelope: both become the same document, so
/// a retry in either form is the same request.
async fn send(
    state: ApiState,
    caller: Caller,
    headers: HeaderMap,
    body: JsonOrEdxml<SendRequest>,
    kind: Kind,
    refers_to: Option<ContentId>,
) -> Result<(StatusCode, Json<SendResponse>), Problem> {
    let started = std::time::Instant::now();
    let business = BusinessType::of_kind(kind);
    let form = SendForm::of(&body);
    if let JsonOrEdxml::Json(request) = &body {
        // The sender is known before decoding: refuse what it may not do at once.
        authorize(
            &state,
            &caller,
            &request.header.from.organ_id,
            refers_to,
            form,
        )
        .await?;
    }
    // Decoding base64 or XML, validating, encoding and hashing up to tens of MiB is CPU
    // work, and reading the idempotency record may wait on the disk: both off the async
    // workers, in one hop (unless the body is small).
    let roster = state.roster();
    let key_field = if headers.contains_key("idempotency-key") {
        "idempotency-key"
    } else {
        "header.document_id"
    };
    // The key is claimed only for a sender the caller may act for: another tenant's send
    // in progress is not told "in progress" because of a request that will be refused.
    let may_act = caller.clone();
    let small = super::extract::is_small_body(&headers);
    let decode = move |state: &ApiState| {
        let document = match body {
            // JSON: `business` may be left `new`; the route sets it.
            JsonOrEdxml::Json(mut request) => {
                if request.header.business != BusinessJson::New
                    && request.header.business != BusinessJson::from(business)
                {
                    return Err(Problem::invalid(form.business_field(), ACT_ON_ROUTES));
                }
                request.header.business = business.into();
                request.into_document()?
            }
            // edXML: the envelope says what it is (with the reference types 1–3 need),
            // and must say what the route does.
            JsonOrEdxml::Edxml(xml) => {
                let document = edxml::document_from_edxml(&xml).map_err(edxml_problem)?;
                if document.header.business != business {
                    let detail = match business {
                        BusinessType::New => ACT_ON_ROUTES.to_owned(),
                        other => format!(
                            "this route takes business type {} ({})",
                            other.code(),
                            kind_name(kind)
                        ),
                    };
                    return Err(Problem::invalid(form.business_field(), detail));
                }
                document
            }
        };
        let tenant = &document.header.from.organ_id;
        let mut to = Vec::with_capacity(document.header.to.len());
        for (i, org) in document.header.to.iter().enumerate() {
            let field = || form.to_field(i);
            if &org.organ_id == tenant {
                return Err(Problem::invalid(field(), "an agency cannot send to itself"));
            }
            roster
                .active_agency(&org.organ_id)
                .map_err(|e| Problem::invalid(field(), e.to_string()))?;
            to.push(org.organ_id.clone());
        }
        let plaintext = document
            .to_bytes()
            .map_err(|e| Problem::invalid("header", e.to_string()))?;
        let fingerprint = send_fingerprint(kind, refers_to, &plaintext);
        // Claimed only for a sender hosted here with a well-formed key; what the claim says
        // is used only after the checks below (authorization first).
        let key = idempotency_key(&headers, tenant, &document.header.document_id);
        let claim = match &key {
            Ok(key) if state.hosts(tenant) && may_act.may_act_for(tenant).is_ok() => {
                Some(state.claim(key, &fingerprint))
            }
            _ => None,
        };
        Ok((document, to, plaintext, fingerprint, key, claim))
    };
    let (document, to, plaintext, fingerprint, key, claim) =
        state.blocking_unless_small(small, decode).await?;
    let from = document.header.from.organ_id.clone();
    if let SendForm::Edxml = form {
        authorize(&state, &caller, &from, refers_to, form).await?;
    }
    if !state.hosts(&from) {
        return Err(
            Problem::forbidden(format!("agency {from} is not hosted on this node"))
                .field(form.sender_field()),
        );
    }
    let key = key?;
    let Some(claim) = claim else {
        return Err(Problem::internal("the send was not claimed"));
    };
    let once = SendOnce {
        tenant: &from,
        kind,
        refers_to,
        document: &document,
        to,
        plaintext: &plaintext,
        fingerprint,
        key,
        extra: Vec::new(),
    };
    let sent = match claim {
        Ok(claim) => state.send_claimed(once, claim).await,
        Err(e) => Err(e),
    };
    let (id, duplicate) = match sent {
        Ok(sent) => sent,
        Err(SendOnceError::InProgress) => {
            return Err(
                Problem::conflict("a request with this idempotency key is in progress")
                    .field(key_field),
            );
        }
        Err(SendOnceError::Reused(id)) => {
            return Err(Problem::conflict(format!(
                "this key was used for a different request, sent as {id}"
            ))
            .field(key_field));
        }
        Err(SendOnceError::Failed(p)) => return Err(p),
        Err(SendOnceError::Send(e)) => return Err(e.into()),
    };
    if duplicate {
        tracing::info!(tenant = %from, %id, "retried send answered with the earlier id");
    } else {
        state
            .inner
            .metrics
            .send_acknowledged(started.elapsed().as_secs_f64());
        tracing::debug!(tenant = %from, %id, kind = kind_name(kind), "document sent");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SendResponse {
            id: id.to_string(),
            duplicate,
        }),
    ))
}

/// A document send made at most once per idempotency key (see the module's notes), shared
/// by the API and the hub-compatible listener.
pub(crate) struct SendOnce<'a> {
    pub tenant: &'a AgencyId,
    pub kind: Kind,
    pub refers_to: Option<ContentId>,
    /// Validated; its recipients are `to`.
    pub document: &'a Document,
    pub to: Vec<AgencyId>,
    /// `document`'s canonical bytes.
    pub plaintext: &'a [u8],
    /// [`send_fingerprint`] of this request.
    pub fingerprint: [u8; 32],
    /// The idempotency key ([`document_id_key`] or a client's key).
    pub key: Vec<u8>,
    /// More `meta` rows to write in the envelope's batch.
    pub extra: Vec<MetaRecord>,
}

/// Why a [`SendOnce`] was not sent.
#[derive(Debug)]
pub(crate) enum SendOnceError {
    /// A request with this key is being answered.
    InProgress,
    /// The key was used for a different request, sent as this envelope.
    Reused(ContentId),
    /// The idempotency record could not be read.
    Failed(Problem),
    /// Sealing or submitting failed.
    Send(crate::send::SendError),
}

/// The fingerprint that tells a retry (same request) from a reused key.
pub(crate) fn send_fingerprint(
    kind: Kind,
    refers_to: Option<ContentId>,
    plaintext: &[u8],
) -> [u8; 32] {
    Sha256::new()
        .chain_update(kind_name(kind))
        .chain_update(refers_to.map(|r| r.0).unwrap_or_default())
        .chain_update(plaintext)
        .finalize()
        .into()
}

/// The idempotency key of a send identified by the DMS's DocumentId.
pub(crate) fn document_id_key(tenant: &AgencyId, document_id: &str) -> Vec<u8> {
    let mut key = IDEMPOTENCY_PREFIX.to_vec();
    key.extend_from_slice(tenant.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(b"d:");
    key.extend_from_slice(document_id.as_bytes());
    key
}

/// What the idempotency record says of a send under its key ([`ApiState::claim`]).
#[derive(Debug)]
pub(crate) enum Claim {
    /// No earlier send: this one may go. The key is held in progress until this is dropped.
    Fresh(InProgress),
    /// The same request was sent before, as this envelope.
    Earlier(ContentId),
}

impl ApiState {
    /// Holds `key` in progress and reads its idempotency record: a fresh send, the same
    /// request sent earlier, or (errors) a request in progress or the key reused for a
    /// different one. Blocking.
    pub(crate) fn claim(&self, key: &[u8], fingerprint: &[u8; 32]) -> Result<Claim, SendOnceError> {
        let Some(in_progress) = self.inner.send.begin(key) else {
            return Err(SendOnceError::InProgress);
        };
        let earlier = self
            .inner
            .store
            .get(Column::Meta, key)
            .map_err(|e| SendOnceError::Failed(e.into()))?;
        let Some(record) = earlier else {
            return Ok(Claim::Fresh(in_progress));
        };
        let corrupt = || SendOnceError::Failed(Problem::internal("corrupt idempotency record"));
        let (id, earlier_fingerprint) = record.split_at_checked(32).ok_or_else(corrupt)?;
        let id = ContentId(id.try_into().map_err(|_| corrupt())?);
        if earlier_fingerprint != fingerprint {
            return Err(SendOnceError::Reused(id));
        }
        Ok(Claim::Earlier(id))
    }

    /// Sends `once.document` unless its key already names a send: returns the content id
    /// and whether it was an earlier send's. The idempotency record (content id ‖
    /// fingerprint), the document's reference and `once.extra` are written in the
    /// envelope's own batch: after a crash a retry finds all of them or none.
    pub(crate) async fn send_once(
        &self,
        once: SendOnce<'_>,
    ) -> Result<(ContentId, bool), SendOnceError> {
        let (key, fingerprint) = (once.key.clone(), once.fingerprint);
        let claim = self
            .blocking(move |s| Ok(s.claim(&key, &fingerprint)))
            .await
            .map_err(SendOnceError::Failed)??;
        self.send_claimed(once, claim).await
    }

    /// [`send_once`](Self::send_once) after its [`claim`](Self::claim).
    pub(crate) async fn send_claimed(
        &self,
        once: SendOnce<'_>,
        claim: Claim,
    ) -> Result<(ContentId, bool), SendOnceError> {
        let _in_progress = match claim {
            Claim::Earlier(id) => return Ok((id, true)),
            Claim::Fresh(in_progress) => in_progress,
        };
        let header = &once.document.header;
        let routing = Routing {
            doc_type: Some(header.document_type.clone()),
            priority: header.priority,
            due: header.due_date.clone(),
            refers_to: once.refers_to,
            status: None,
        };
        let mut records = vec![
            MetaRecord::IdUnder {
                key: once.key,
                suffix: once.fingerprint.to_vec(),
            },
            SendPath::sent_record(once.document).map_err(SendOnceError::Send)?,
        ];
        records.extend(once.extra);
        let id = self
            .inner
            .send
            .send_recorded(
                once.tenant,
                once.kind,
                once.to,
                routing,
                once.plaintext,
                records,
            )
            .await
            .map_err(SendOnceError::Send)?;
        Ok((id, false))
    }
}

/// Send a document.
///
/// The sender is `header.from.organ_id`, a tenant the token acts for. Answers 202 once the
/// signed, sealed envelope is durable in this node's outbox; delivery follows. A retry with
/// the same `Idempotency-Key` (or, without one, the same `header.document_id`) answers the
/// first content id with `duplicate: true`. The body may also be an edXML envelope
/// (`application/xml` or `text/xml`, QCVN 102:2016, attachments in `AttachmentEncoded`): an
/// element that is missing or invalid is a 422 naming its path.
#[utoipa::path(
    post,
    path = "/v1/documents",
    tag = "documents",
    request_body(description = "JSON, or an edXML (QCVN 102:2016) envelope", content((SendRequest = "application/json"), (String = "application/xml"))),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Client key making retries safe (1–255 visible ASCII characters)")),
    responses(
        (status = 202, description = "Durable in the outbox", body = SendResponse),
        (status = 400, description = "Malformed JSON or header", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token does not act for the sender", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key in use or reused", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled (nothing for 30 s) or arrived under 16 KiB/s", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Neither JSON nor edXML", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field or edXML element is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests in progress", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The node cannot accept it now", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn send_document(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonOrEdxml<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), Problem> {
    send(state, caller, headers, body, Kind::Document, None).await
}

/// The answers of `/update`, `/replace` and `/revoke`, listed once for the three (OpenAPI
/// only: the handlers answer with [`SendResponse`] or a [`Problem`]).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum ActOnResponses {
    #[response(status = 202, description = "Durable in the outbox")]
    Accepted(SendResponse),
    #[response(
        status = 400,
        description = "Malformed request",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(
        status = 401,
        description = "No valid bearer token",
        content_type = "application/problem+json"
    )]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Not the earlier document's sender",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(
        status = 404,
        description = "No such document",
        content_type = "application/problem+json"
    )]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "Idempotency key in use or reused",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(
        status = 408,
        description = "The body stalled (nothing for 30 s) or arrived under 16 KiB/s",
        content_type = "application/problem+json"
    )]
    Stalled(Problem),
    #[response(
        status = 413,
        description = "Body too large",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Neither JSON nor edXML",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
    #[response(
        status = 422,
        description = "A field or edXML element is invalid",
        content_type = "application/problem+json"
    )]
    Invalid(Problem),
    #[response(
        status = 503,
        description = "The node cannot accept it now",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}

async fn act_on(
    state: ApiState,
    caller: Caller,
    headers: HeaderMap,
    id: &str,
    body: JsonOrEdxml<SendRequest>,
    kind: Kind,
) -> Result<(StatusCode, Json<SendResponse>), Problem> {
    let earlier = content_id(id)?;
    send(state, caller, headers, body, kind, Some(earlier)).await
}

/// Update an earlier document.
///
/// Sends a new document (business type 2, update) that names the earlier one: by content id
/// in the path (the envelope's reference), by DocumentId in `header.business_ref`. Only the
/// earlier document's sender may do this. Answers as `POST /v1/documents`.
#[utoipa::path(
    post,
    path = "/v1/documents/{id}/update",
    tag = "documents",
    request_body(description = "JSON, or an edXML (QCVN 102:2016) envelope", content((SendRequest = "application/json"), (String = "application/xml"))),
    params(("id" = String, Path, description = "Content id of the earlier document"),
        ("Idempotency-Key" = Option<String>, Header, description = "Client key making retries safe")),
    responses(ActOnResponses)
)]
pub async fn update_document(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    headers: HeaderMap,
    body: JsonOrEdxml<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), Problem> {
    act_on(state, caller, headers, &path.id, body, Kind::Update).await
}

/// Replace an earlier document.
///
/// As `/update`, with business type 3 (replace).
#[utoipa::path(
    post,
    path = "/v1/documents/{id}/replace",
    tag = "documents",
    request_body(description = "JSON, or an edXML (QCVN 102:2016) envelope", content((SendRequest = "application/json"), (String = "application/xml"))),
    params(("id" = String, Path, description = "Content id of the earlier document"),
        ("Idempotency-Key" = Option<String>, Header, description = "Client key making retries safe")),
    responses(ActOnResponses)
)]
pub async fn replace_document(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    headers: HeaderMap,
    body: JsonOrEdxml<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), Problem> {
    act_on(state, caller, headers, &path.id, body, Kind::Replace).await
}

/// Revoke an earlier document.
///
/// As `/update`, with business type 1 (revoke): a new document that annuls the earlier one.
#[utoipa::path(
    post,
    path = "/v1/documents/{id}/revoke",
    tag = "documents",
    request_body(description = "JSON, or an edXML (QCVN 102:2016) envelope", content((SendRequest = "application/json"), (String = "application/xml"))),
    params(("id" = String, Path, description = "Content id of the earlier document"),
        ("Idempotency-Key" = Option<String>, Header, description = "Client key making retries safe")),
    responses(ActOnResponses)
)]
pub async fn revoke_document(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    headers: HeaderMap,
    body: JsonOrEdxml<SendRequest>,
) -> Result<(StatusCode, Json<SendResponse>), Problem> {
    act_on(state, caller, headers, &path.id, body, Kind::Revoke).await
}

fn document_response(
    env: &lienthong_protocol::envelope::SignedEnvelope,
    document: lienthong_protocol::document::Document,
) -> DocumentResponse {
    let body = env.body();
    DocumentResponse {
        id: env.id().to_string(),
        kind: kind_str(body.kind),
        from: body.from.clone(),
        to: body.to.clone(),
        created: rfc3339(body.created_ms),
        created_ms: body.created_ms,
        refers_to: body.routing.refers_to.map(|r| r.to_string()),
        attachments: document
            .attachments
            .iter()
            .enumerate()
            .map(|(index, a)| AttachmentInfo {
                index,
                name: a.name.clone(),
                content_type: a.mime.clone(),
                description: a.description.clone(),
                size: a.data.len() as u64,
            })
            .collect(),
        header: HeaderJson::from(document.header),
    }
}

/// Open a received document.
///
/// The document as the caller's tenant (a recipient) received it: envelope facts, header and
/// the attachments' descriptions (their bytes are at `…/attachments/{n}`). The sender gets 403:
/// the payload is sealed for the recipients only.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}",
    tag = "documents",
    params(("id" = String, Path, description = "Content id"), TenantQuery),
    responses(
        (status = 200, description = "The opened document", body = DocumentResponse),
        (status = 400, description = "Malformed id or tenant", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token, or sealed for others", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payload still being fetched", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_document(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    QueryParams(query): QueryParams<TenantQuery>,
) -> Result<Json<DocumentResponse>, Problem> {
    let tenant = caller.tenant(query.tenant.as_deref())?;
    let id = content_id(&path.id)?;
    let (env, document) = state
        .blocking(move |s| s.open_document(&id, &tenant))
        .await?;
    Ok(Json(document_response(&env, document)))
}

/// A received document's header.
///
/// The edXML header fields only (no attachment list).
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/header",
    tag = "documents",
    params(("id" = String, Path, description = "Content id"), TenantQuery),
    responses(
        (status = 200, description = "The header", body = HeaderJson),
        (status = 400, description = "Malformed id or tenant", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token, or sealed for others", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payload still being fetched", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_header(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    QueryParams(query): QueryParams<TenantQuery>,
) -> Result<Json<HeaderJson>, Problem> {
    let tenant = caller.tenant(query.tenant.as_deref())?;
    let id = content_id(&path.id)?;
    let (_, document) = state
        .blocking(move |s| s.open_document(&id, &tenant))
        .await?;
    Ok(Json(HeaderJson::from(document.header)))
}

/// One attachment's bytes.
///
/// With its `Content-Type`, `Content-Length` and a `Content-Disposition` naming the file.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/attachments/{n}",
    tag = "documents",
    params(("id" = String, Path, description = "Content id"),
        ("n" = usize, Path, description = "Attachment index, from 0"), TenantQuery),
    responses(
        (status = 200, description = "The attachment", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "Malformed id, index or tenant", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token, or sealed for others", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document or attachment", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payload still being fetched", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_attachment(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<AttachmentPath>,
    QueryParams(query): QueryParams<TenantQuery>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant(query.tenant.as_deref())?;
    let id = content_id(&path.id)?;
    let n: usize = path.n.parse().map_err(|_| {
        Problem::bad_request(format!("{:?} is not an attachment index", path.n)).field("n")
    })?;
    let attachment = state
        .blocking(move |s| {
            let (_, document) = s.open_document(&id, &tenant)?;
            let count = document.attachments.len();
            document.attachments.into_iter().nth(n).ok_or_else(|| {
                Problem::not_found(format!("document {id} has {count} attachment(s)")).field("n")
            })
        })
        .await?;
    let content_type = HeaderValue::from_str(&attachment.mime)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename*=UTF-8''{}",
        percent_encode(&attachment.name)
    ))
    .unwrap_or(HeaderValue::from_static("attachment"));
    let len = attachment.data.len();
    let mut response = Body::from(attachment.data).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// A received document as edXML.
///
/// The whole document (header, attachments base64-encoded) as an edXML envelope
/// (QCVN 102:2016, `edXML:` prefixed, as the national hub's SDK writes it), for a DMS that
/// imports edXML.
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/edxml",
    tag = "documents",
    params(("id" = String, Path, description = "Content id"), TenantQuery),
    responses(
        (status = 200, description = "The edXML envelope", body = String, content_type = "application/xml"),
        (status = 400, description = "Malformed id or tenant", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token, or sealed for others", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Payload still being fetched", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_edxml(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    QueryParams(query): QueryParams<TenantQuery>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant(query.tenant.as_deref())?;
    let id = content_id(&path.id)?;
    let xml = state
        .blocking(move |s| {
            let (_, document) = s.open_document(&id, &tenant)?;
            edxml::document_to_edxml(&document).map_err(|e| {
                Problem::internal(format!("document {id} cannot be written as edXML: {e}"))
            })
        })
        .await?;
    Ok(xml_response(xml))
}

/// An `application/xml` answer.
fn xml_response(xml: Vec<u8>) -> Response {
    let len = xml.len();
    let mut response = Body::from(xml).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

/// A status as edXML.
///
/// A status envelope (its id as listed in the inbox or the trace) as an edXML status
/// message, for its poster or its recipients: `ResponseFor` names the document by its
/// DocumentId, code and date; `Description` (the reason) and `StaffInfo` (the assignee)
/// are filled in for a recipient, which alone can open them (so a 02, 04, 13 or 16 is a
/// 403 for its poster: edXML requires the detail).
#[utoipa::path(
    get,
    path = "/v1/statuses/{id}/edxml",
    tag = "documents",
    params(("id" = String, Path, description = "Content id of the status envelope"), TenantQuery),
    responses(
        (status = 200, description = "The edXML status message", body = String, content_type = "application/xml"),
        (status = 400, description = "Malformed id or tenant", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token, or its detail is sealed for others", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such status for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The document's payload is still being fetched", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_status_edxml(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    QueryParams(query): QueryParams<TenantQuery>,
) -> Result<Response, Problem> {
    let tenant = caller.tenant(query.tenant.as_deref())?;
    let id = content_id(&path.id)?;
    let xml = state
        .blocking(move |s| {
            let message = s.status_message(&id, &tenant)?;
            edxml::status_to_edxml(&message).map_err(|e| {
                Problem::internal(format!("status {id} cannot be written as edXML: {e}"))
            })
        })
        .await?;
    Ok(xml_response(xml))
}

impl ApiState {
    /// The status envelope `id` as an edXML status message for `tenant`, its poster or a
    /// recipient (404 otherwise). Blocking.
    fn status_message(&self, id: &ContentId, tenant: &AgencyId) -> Result<StatusMessage, Problem> {
        let not_found = || Problem::not_found(format!("no status {id} for agency {tenant}"));
        let env = self.envelope(id)?.ok_or_else(not_found)?;
        let body = env.body();
        if body.kind != Kind::Status || (&body.from != tenant && !body.to.contains(tenant)) {
            return Err(not_found());
        }
        let corrupt = |what: &str| Problem::internal(format!("status {id} has no {what}"));
        let code = body.routing.status.ok_or_else(|| corrupt("code"))?;
        let document = body.routing.refers_to.ok_or_else(|| corrupt("document"))?;
        let (_, party) = self.document_envelope(&document, tenant)?;
        let response_for = match party {
            // The sender kept its document's reference when it sent it.
            Party::Sender => self.inner.send.sent_reference(&document)?.ok_or_else(|| {
                Problem::not_found(format!(
                    "document {document} was sent before references were kept"
                ))
            })?,
            Party::Recipient => {
                let (_, opened) = self.open_document(&document, tenant)?;
                StatusMessage::reference_to(&opened.header)
            }
        };
        let organization = |agency: &AgencyId| Organization {
            organ_id: agency.clone(),
            organ_name: self
                .roster()
                .agency(agency)
                .map(|a| a.name.clone())
                .unwrap_or_else(|| agency.to_string()),
            organ_address: None,
            email: None,
            telephone: None,
        };
        let mut message = StatusMessage::new(
            organization(&body.from),
            response_for,
            code,
            body.created_ms,
        );
        if let Some(to) = body.to.first() {
            message = message.with_to(organization(to));
        }
        if let Some(detail) = self.status_detail(id, tenant) {
            if let Some(reason) = detail.reason {
                message = message.with_description(reason);
            }
            if let Some(assignee) = detail.assignee {
                message = message.with_staff(StaffInfo::person(assignee, None));
            }
        } else if code.needs_detail() {
            // edXML requires the reason or assignee, which is sealed for the recipients.
            return Err(Problem::forbidden(format!(
                "status {id} ({code}) carries a detail sealed for its recipients; only they \
                 can read it as edXML"
            )));
        }
        Ok(message)
    }
}

/// RFC 5987 percent-encoding of a file name.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn detail_problem(e: DetailError) -> Problem {
    match e {
        DetailError::Field { field, problem } => Problem::invalid(field, problem),
        e => Problem::invalid("reason", e.to_string()),
    }
}

/// Seals a status detail for `to` (nothing when empty).
async fn seal_detail(
    state: &ApiState,
    tenant: &AgencyId,
    to: &[AgencyId],
    detail: &StatusDetail,
) -> Result<Content, Problem> {
    if detail.is_empty() {
        return Ok(Content::None);
    }
    let bytes = detail.to_bytes().map_err(detail_problem)?;
    Ok(state.inner.send.seal(tenant, to, &bytes).await?)
}

/// A status to post, read from JSON or from an edXML status message.
struct PostedStatus {
    tenant: AgencyId,
    code: Code,
    detail: StatusDetail,
    /// The edXML `ResponseFor` (JSON names the document by the path alone).
    response_for: Option<Reference>,
    /// The field that names the code, as the form spells it.
    code_field: &'static str,
}

impl PostedStatus {
    fn json(
        caller: &Caller,
        tenant: Option<&str>,
        request: StatusRequest,
    ) -> Result<Self, Problem> {
        Ok(Self {
            tenant: caller.tenant(tenant)?,
            code: Code::parse(&request.code)
                .map_err(|e| Problem::invalid("code", e.to_string()))?,
            detail: StatusDetail {
                reason: request.reason,
                assignee: request.assignee,
            },
            response_for: None,
            code_field: "code",
        })
    }

    /// The poster is `Status/From`; the reason is the description, the assignee (04) the
    /// staff member named (else the description).
    fn edxml(caller: &Caller, message: StatusMessage) -> Result<Self, Problem> {
        caller
            .may_act_for(&message.from.organ_id)
            .map_err(|p| p.field("Status/From/OrganId"))?;
        let detail = if message.code == Code::Assigned {
            StatusDetail {
                reason: None,
                assignee: message.detail().map(str::to_owned),
            }
        } else {
            StatusDetail {
                reason: message.description.clone(),
                assignee: None,
            }
        };
        Ok(Self {
            tenant: message.from.organ_id,
            code: message.code,
            detail,
            response_for: Some(message.response_for),
            code_field: "Status/StatusCode",
        })
    }
}

/// Checks an edXML `ResponseFor` against the document it is posted to (422 naming the
/// element otherwise).
fn check_response_for(
    reference: &Reference,
    sender: &AgencyId,
    document_id: &str,
) -> Result<(), Problem> {
    if &reference.organ_id != sender {
        return Err(Problem::invalid(
            "Status/ResponseFor/OrganId",
            format!(
                "{} did not send this document; {sender} did",
                reference.organ_id
            ),
        ));
    }
    if reference.document_id != document_id {
        return Err(Problem::invalid(
            "Status/ResponseFor/DocumentId",
            format!(
                "{:?} is not this document's DocumentId ({document_id:?})",
                reference.document_id
            ),
        ));
    }
    Ok(())
}

/// Post a processing status.
///
/// A recipient moves the document forward: 02 rejected (with `reason`), 03 accepted, 04
/// assigned (with `assignee`), 05 processing, 06 completed; or answers the sender's recall
/// or update request (13) with 15 agreed or 16 refused (with `reason`). The node sent 01
/// itself on arrival. Transitions are checked: one that may not follow the current status is
/// a 409 saying why. Reasons and assignees travel sealed for the sender.
///
/// The body may also be an edXML status message (`application/xml`): `Status/From` is the
/// poster, `StatusCode` the code, `Description` the reason and `StaffInfo/Staff` the
/// assignee; its `ResponseFor` must name this document.
#[utoipa::path(
    post,
    path = "/v1/documents/{id}/status",
    tag = "documents",
    request_body(description = "JSON, or an edXML (QCVN 102:2016) status message", content((StatusRequest = "application/json"), (String = "application/xml"))),
    params(("id" = String, Path, description = "Content id of the received document"), TenantQuery),
    responses(
        (status = 202, description = "Durable, on its way to the sender", body = StatusResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a recipient of this document", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The status may not follow the current one", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled (nothing for 30 s) or arrived under 16 KiB/s", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown code, missing reason or assignee", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The node cannot accept it now", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn post_status(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    QueryParams(query): QueryParams<TenantQuery>,
    body: JsonOrEdxml<StatusRequest>,
) -> Result<(StatusCode, Json<StatusResponse>), Problem> {
    let id = content_id(&path.id)?;
    let posted = match body {
        JsonOrEdxml::Json(request) => {
            PostedStatus::json(&caller, query.tenant.as_deref(), request)?
        }
        JsonOrEdxml::Edxml(xml) => {
            let message = state
                .blocking(move |_| edxml::status_from_edxml(&xml).map_err(edxml_problem))
                .await?;
            PostedStatus::edxml(&caller, message)?
        }
    };
    let PostedStatus {
        tenant,
        code,
        detail,
        response_for,
        code_field,
    } = posted;
    match code {
        Code::Arrived => {
            return Err(Problem::invalid(
                code_field,
                "01 (arrived) is sent by the node itself when the document is stored",
            ));
        }
        Code::RecallRequested => {
            return Err(Problem::invalid(
                code_field,
                "13 is the sender's request: use POST /v1/documents/{id}/recall",
            ));
        }
        _ => {}
    }
    detail.validate(code).map_err(detail_problem)?;
    let who = tenant.clone();
    let (env, party) = state
        .blocking(move |s| s.document_envelope(&id, &who))
        .await?;
    if party != Party::Recipient {
        return Err(Problem::forbidden(format!(
            "status {code} is posted by a recipient of {id}; its sender asks with /recall"
        )));
    }
    if let Some(reference) = response_for {
        // An edXML status names its document: it must be the one in the path.
        let who = tenant.clone();
        let (env, document) = state.blocking(move |s| s.open_document(&id, &who)).await?;
        check_response_for(&reference, &env.body().from, &document.header.document_id)?;
    }
    let sender = env.body().from.clone();
    let content = seal_detail(&state, &tenant, std::slice::from_ref(&sender), &detail).await?;
    let status_id = state
        .inner
        .driver
        .post_status(StatusPost {
            request: 0,
            tenant: tenant.clone(),
            document: id,
            code,
            to: Vec::new(),
            content,
        })
        .await?;
    tracing::info!(%tenant, document = %id, status = %status_id, %code, "status posted");
    Ok((
        StatusCode::ACCEPTED,
        Json(StatusResponse {
            id: status_id.to_string(),
            code: code.as_str().to_owned(),
        }),
    ))
}

/// Recall a sent document (or ask to change it).
///
/// The sender's status 13 with a reason, to every recipient or those named; each answers 15
/// (agreed: the document is recalled) or 16 (refused). Refused (409) for a recipient that has
/// already finished with the document or has a request pending.
#[utoipa::path(
    post,
    path = "/v1/documents/{id}/recall",
    tag = "documents",
    request_body(content = RecallRequest, content_type = "application/json"),
    params(("id" = String, Path, description = "Content id of the sent document"), TenantQuery),
    responses(
        (status = 202, description = "Durable, on its way to the recipients", body = StatusResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not the document's sender", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A recipient cannot be asked now", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body stalled (nothing for 30 s) or arrived under 16 KiB/s", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing reason, or not a recipient", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The node cannot accept it now", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn recall(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    QueryParams(query): QueryParams<TenantQuery>,
    JsonBody(request): JsonBody<RecallRequest>,
) -> Result<(StatusCode, Json<StatusResponse>), Problem> {
    let tenant = caller.tenant(query.tenant.as_deref())?;
    let id = content_id(&path.id)?;
    let detail = StatusDetail {
        reason: Some(request.reason),
        assignee: None,
    };
    detail
        .validate(Code::RecallRequested)
        .map_err(detail_problem)?;
    let who = tenant.clone();
    let (env, party) = state
        .blocking(move |s| s.document_envelope(&id, &who))
        .await?;
    if party != Party::Sender {
        return Err(Problem::forbidden(format!(
            "only the sender of {id} may recall it"
        )));
    }
    for (i, r) in request.recipients.iter().enumerate() {
        if !env.body().to.contains(r) {
            return Err(Problem::invalid(
                format!("recipients[{i}]"),
                format!("{r} is not a recipient of {id}"),
            ));
        }
    }
    let mut asked = if request.recipients.is_empty() {
        env.body().to.clone()
    } else {
        request.recipients
    };
    asked.sort();
    asked.dedup();
    let content = seal_detail(&state, &tenant, &asked, &detail).await?;
    let status_id = state
        .inner
        .driver
        .post_status(StatusPost {
            request: 0,
            tenant: tenant.clone(),
            document: id,
            code: Code::RecallRequested,
            to: asked,
            content,
        })
        .await
        .map_err(|e| match e {
            crate::driver::DriverError::Refused(RelayError::Transition(t)) => {
                Problem::conflict(t.to_string())
            }
            e => e.into(),
        })?;
    tracing::info!(%tenant, document = %id, status = %status_id, "recall requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(StatusResponse {
            id: status_id.to_string(),
            code: Code::RecallRequested.as_str().to_owned(),
        }),
    ))
}

fn stage_str(stage: Stage) -> String {
    match stage {
        Stage::Sent => "sent".to_owned(),
        Stage::At(code) => code.as_str().to_owned(),
        Stage::Recalled => "recalled".to_owned(),
    }
}

/// Trace a document.
///
/// Each recipient's status chain with times: all recipients for the sender, the caller's own
/// copy for a recipient. Reasons and assignees appear where the caller can open them (those
/// sealed for it).
#[utoipa::path(
    get,
    path = "/v1/documents/{id}/trace",
    tag = "documents",
    params(("id" = String, Path, description = "Content id"), TenantQuery),
    responses(
        (status = 200, description = "The status chains", body = TraceResponse),
        (status = 400, description = "Malformed id or tenant", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not for this token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for this tenant", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_trace(
    State(state): State<ApiState>,
    caller: Caller,
    PathParams(path): PathParams<IdPath>,
    QueryParams(query): QueryParams<TenantQuery>,
) -> Result<Json<TraceResponse>, Problem> {
    let tenant = caller.tenant(query.tenant.as_deref())?;
    let id = content_id(&path.id)?;
    let trace = state
        .blocking(move |s| {
            let (env, party) = s.document_envelope(&id, &tenant)?;
            let rows = match party {
                Party::Sender => s.inner.store.scan_range(
                    Column::Statuses,
                    id.as_bytes(),
                    id.as_bytes(),
                    lienthong_protocol::envelope::MAX_RECIPIENTS,
                )?,
                Party::Recipient => {
                    let key = id_agency_key(&id, &tenant);
                    s.inner
                        .store
                        .get(Column::Statuses, &key)?
                        .map(|v| vec![(key, v)])
                        .unwrap_or_default()
                }
            };
            let mut recipients = Vec::with_capacity(rows.len());
            for (key, value) in rows {
                let Some((_, recipient)) = records::split_id_agency_key(&key) else {
                    continue;
                };
                let record: StatusRecord =
                    records::decode(Column::Statuses, &value).map_err(Problem::internal)?;
                let history = record
                    .history
                    .iter()
                    .map(|e| {
                        let detail = e
                            .code
                            .needs_detail()
                            .then(|| s.status_detail(&e.id, &tenant))
                            .flatten()
                            .unwrap_or_default();
                        TraceEntry {
                            code: e.code.as_str().to_owned(),
                            description: e.code.describe().to_owned(),
                            at: rfc3339(e.at_ms),
                            at_ms: e.at_ms,
                            status_id: e.id.to_string(),
                            reason: detail.reason,
                            assignee: detail.assignee,
                        }
                    })
                    .collect();
                recipients.push(RecipientTrace {
                    recipient,
                    stage: stage_str(record.chain.stage),
                    request_pending: record.chain.request_pending,
                    ended: record.ended,
                    history,
                });
            }
            let body = env.body();
            Ok(TraceResponse {
                id: id.to_string(),
                sender: body.from.clone(),
                sent: rfc3339(body.created_ms),
                sent_ms: body.created_ms,
                recipients,
            })
        })
        .await?;
    Ok(Json(trace))
}
