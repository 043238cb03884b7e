//! The SDK's operations over the node: `sendEdoc` (documents and status edXML),
//! `getReceivedEdocList`, `getEdoc`, `downloadEdoc`, `updateStatus`, `getSentEdocList`,
//! `countReceiveEdoc`, `countReceiveStatus`, `getAgenciesList`.
//!
//! The transmission id (`DocId`) is the envelope's content id. A document's send is the
//! API's send: same roster checks, same idempotency record (`d:` DocumentId, written in
//! the envelope's batch), so a retried `sendEdoc` answers the first `DocId` and a revoke,
//! update or replace finds the earlier document by its DocumentId.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::{BusinessType, Document, Organization, Reference};
use lienthong_protocol::edxml::{
    EdxmlMessage, StaffInfo, StatusMessage, document_to_edxml, from_edxml, status_to_edxml,
};
use lienthong_protocol::envelope::{Kind, SignedEnvelope};
use lienthong_protocol::relay::records::{self, StatusRecord};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::{Content, RelayError, StatusPost};
use lienthong_protocol::roster::AgencyState;
use lienthong_protocol::status::{StatusCode, StatusDetail};
use serde_json::{Map, Value, json};

use super::auth::Params;
use super::client::hash_file;
use super::reply::{HubError, ok, ok_with};
use super::state::{Pending, Sent, Stream};
use super::time::{format_list_time, parse_list_time};
use super::{Hub, HubSystem};
use crate::api::ApiState;
use crate::api::documents::{SendOnce, SendOnceError, document_id_key, kind_str, send_fingerprint};
use crate::api::open::Party;
use crate::driver::DriverError;
use crate::send::SendError;

/// Most pending entries counted by `countReceive*`.
const MAX_COUNT: usize = 100_000;

/// Runs blocking store reads and decryption off the async executor.
async fn blocking<T, F>(api: &ApiState, f: F) -> Result<T, HubError>
where
    F: FnOnce(&ApiState) -> Result<T, HubError> + Send + 'static,
    T: Send + 'static,
{
    api.blocking(move |s| Ok(f(s))).await?
}

/// One authenticated call.
pub(crate) struct Call<'a> {
    pub hub: &'a Arc<Hub>,
    pub system: &'a HubSystem,
    pub params: &'a Params,
}

fn driver_error(e: DriverError) -> HubError {
    match e {
        DriverError::Refused(RelayError::Transition(t)) => HubError::StatusRefused(t.to_string()),
        DriverError::Refused(RelayError::UnknownDocument(d)) => {
            HubError::UnknownDocument(d.to_string())
        }
        e => crate::api::Problem::from(e).into(),
    }
}

fn send_error(e: SendError) -> HubError {
    match e {
        SendError::UnknownRecipient(agency) => HubError::Recipient {
            agency: agency.to_string(),
            problem: "not an active member of the federation".into(),
        },
        SendError::Document(e) => HubError::MalformedEdxml(e.to_string()),
        SendError::Seal(e) => HubError::Invalid(e.to_string()),
        SendError::Store(e) => e.into(),
        SendError::Driver(e) => driver_error(e),
    }
}

/// The content id `tenant` sent with this DocumentId (through the API or the listener).
/// Blocking.
fn sent_with_document_id(
    s: &ApiState,
    tenant: &AgencyId,
    document_id: &str,
) -> Result<Option<ContentId>, HubError> {
    let Some(record) = s
        .inner
        .store
        .get(Column::Meta, &document_id_key(tenant, document_id))?
    else {
        return Ok(None);
    };
    let id = record
        .get(..32)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| HubError::internal("corrupt idempotency record"))?;
    Ok(Some(ContentId(id)))
}

fn content_id_param(params: &Params) -> Result<ContentId, HubError> {
    let text = params.require("docId")?;
    ContentId::parse(text).map_err(|e| HubError::param("docId", e.to_string()))
}

impl Call<'_> {
    fn api(&self) -> &ApiState {
        self.hub.api()
    }

    /// The tenants a read acts for: the one named by `from`, else all the system's.
    fn read_tenants(&self) -> Result<Vec<AgencyId>, HubError> {
        match self.params.get("from") {
            Some(from) => Ok(vec![self.system.may_act_for(from)?]),
            None => Ok(self.system.tenants().to_vec()),
        }
    }

    fn stream(&self) -> Result<Stream, HubError> {
        match self.params.get("messagetype").map(str::to_ascii_lowercase) {
            None => Ok(Stream::Edoc),
            Some(t) if t == "edoc" => Ok(Stream::Edoc),
            Some(t) if t == "status" => Ok(Stream::Status),
            Some(t) => Err(HubError::param(
                "messagetype",
                format!("{t:?}; expected edoc or status"),
            )),
        }
    }

    /// `sendEdoc`: a document or a status edXML in the body.
    pub async fn send_edoc(&self, _headers: &HeaderMap, body: Bytes) -> Result<Response, HubError> {
        let tenant = self.system.may_act_for(self.params.require("from")?)?;
        if let Some(service) = self.params.get("servicetype")
            && !service.eq_ignore_ascii_case("edoc")
        {
            return Err(HubError::param(
                "servicetype",
                format!("{service:?}; expected eDoc"),
            ));
        }
        let stream = match self.params.get("messagetype") {
            Some(_) => self.stream()?,
            None => return Err(HubError::param("messagetype", "missing")),
        };
        let expected = self.params.get("hash-file").map(str::to_ascii_lowercase);
        let message = tokio::task::spawn_blocking(move || {
            // The SDK may follow the file with a CRLF; the hash is the file's.
            let trimmed = body
                .strip_suffix(b"\r\n")
                .or_else(|| body.strip_suffix(b"\n"))
                .unwrap_or(&body);
            // The file alone first (the SDK's usual body), the whole body only if that fails.
            if let Some(expected) = expected
                && hash_file(trimmed) != expected
                && (trimmed.len() == body.len() || hash_file(&body) != expected)
            {
                return Err(HubError::HashFile);
            }
            from_edxml(trimmed).map_err(|e| HubError::MalformedEdxml(e.to_string()))
        })
        .await
        .map_err(HubError::internal)??;
        match (stream, message) {
            (Stream::Edoc, EdxmlMessage::Document(document)) => {
                self.send_document(tenant, *document).await
            }
            (Stream::Status, EdxmlMessage::Status(status)) => {
                self.send_status(tenant, *status).await
            }
            (declared, EdxmlMessage::Document(_)) => Err(HubError::MessageType {
                declared: declared.name().into(),
                found: "document",
            }),
            (declared, EdxmlMessage::Status(_)) => Err(HubError::MessageType {
                declared: declared.name().into(),
                found: "status",
            }),
        }
    }

    async fn send_document(
        &self,
        tenant: AgencyId,
        document: Document,
    ) -> Result<Response, HubError> {
        let api = self.api().clone();
        let header = &document.header;
        if header.from.organ_id != tenant {
            return Err(HubError::NotYourAgency {
                agency: header.from.organ_id.to_string(),
            });
        }
        let roster = api.roster();
        let mut to = Vec::with_capacity(header.to.len());
        for org in &header.to {
            let agency = org.organ_id.clone();
            if agency == tenant {
                return Err(HubError::Recipient {
                    agency: agency.to_string(),
                    problem: "an agency cannot send to itself".into(),
                });
            }
            roster
                .active_agency(&agency)
                .map_err(|e| HubError::Recipient {
                    agency: agency.to_string(),
                    problem: e.to_string(),
                })?;
            to.push(agency);
        }
        to.sort();
        to.dedup();
        let (kind, refers_to) = match header.business {
            BusinessType::New => (Kind::Document, None),
            business => {
                let kind = business.kind();
                let Some(earlier) = header.business_ref.as_ref() else {
                    return Err(HubError::MalformedEdxml(
                        "TraceHeaderList/Bussiness/DocumentId: missing".into(),
                    ));
                };
                let (who, named) = (tenant.clone(), earlier.document_id.clone());
                let found = blocking(&api, move |s| {
                    let Some(id) = sent_with_document_id(s, &who, &named)? else {
                        return Ok(None);
                    };
                    Ok(match s.document_envelope(&id, &who) {
                        Ok((_, Party::Sender)) => Some(id),
                        _ => None,
                    })
                })
                .await?;
                let Some(id) = found else {
                    return Err(HubError::UnknownEarlier(earlier.document_id.clone()));
                };
                (kind, Some(id))
            }
        };
        let document = Arc::new(document);
        let shared = Arc::clone(&document);
        let (plaintext, fingerprint) = tokio::task::spawn_blocking(move || {
            let plaintext = shared
                .to_bytes()
                .map_err(|e| HubError::MalformedEdxml(e.to_string()))?;
            let fingerprint = send_fingerprint(kind, refers_to, &plaintext);
            Ok::<_, HubError>((plaintext, fingerprint))
        })
        .await
        .map_err(HubError::internal)??;
        let document_id = document.header.document_id.clone();
        // The API's idempotency record (by DocumentId), the sent document's reference and
        // the listener's sent record and index, all in the envelope's own batch.
        let once = SendOnce {
            tenant: &tenant,
            kind,
            refers_to,
            document: &document,
            to,
            plaintext: &plaintext,
            fingerprint,
            key: document_id_key(&tenant, &document_id),
            extra: self.hub.state.sent_records(&tenant, &document)?,
        };
        let id = match api.send_once(once).await {
            Ok((id, true)) => {
                tracing::info!(%tenant, %id, "retried sendEdoc answered with the earlier DocId");
                id
            }
            Ok((id, false)) => {
                tracing::info!(%tenant, %id, kind = %kind_str(kind), "document sent through the hub listener");
                id
            }
            Err(SendOnceError::InProgress) => {
                return Err(HubError::Unavailable(format!(
                    "a send of DocumentId {document_id:?} is in progress"
                )));
            }
            Err(SendOnceError::Reused(_)) => return Err(HubError::DocumentIdReused(document_id)),
            Err(SendOnceError::Failed(p)) => return Err(p.into()),
            Err(SendOnceError::Send(e)) => return Err(send_error(e)),
        };
        // A document first sent through the API has no listener record yet.
        self.hub.state.record_sent(&tenant, id, &document).await?;
        Ok(ok_with("DocId", id.to_string().into()))
    }

    async fn send_status(
        &self,
        tenant: AgencyId,
        status: StatusMessage,
    ) -> Result<Response, HubError> {
        let api = self.api().clone();
        if status.from.organ_id != tenant {
            return Err(HubError::NotYourAgency {
                agency: status.from.organ_id.to_string(),
            });
        }
        let code = status.code;
        let reference = &status.response_for;
        let unknown = || {
            HubError::UnknownDocument(format!(
                "ResponseFor {:?} of {}",
                reference.document_id, reference.organ_id
            ))
        };
        let document = if code == StatusCode::RecallRequested {
            if reference.organ_id != tenant {
                return Err(unknown());
            }
            let (who, named) = (tenant.clone(), reference.document_id.clone());
            api.blocking(move |s| Ok(sent_with_document_id(s, &who, &named)))
                .await??
        } else {
            self.hub
                .state
                .received(&tenant, &reference.organ_id, &reference.document_id)
                .await?
        };
        let document = document.ok_or_else(unknown)?;
        if code == StatusCode::Arrived {
            // The node signed 01 itself when the document was stored.
            return Ok(ok_with("DocId", document.to_string().into()));
        }
        let who = tenant.clone();
        let (env, party) = api
            .blocking(move |s| s.document_envelope(&document, &who))
            .await?;
        let detail = if code == StatusCode::Assigned {
            StatusDetail {
                reason: None,
                assignee: status.detail().map(str::to_owned),
            }
        } else {
            StatusDetail {
                reason: status
                    .description
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_owned),
                assignee: None,
            }
        };
        detail
            .validate(code)
            .map_err(|e| HubError::MalformedEdxml(format!("Status: {e}")))?;
        let (to, sealed_for) = if code == StatusCode::RecallRequested {
            if party != Party::Sender {
                return Err(HubError::StatusRefused(format!(
                    "13 is sent by the sender of {document}"
                )));
            }
            let asked: Vec<AgencyId> = match &status.to {
                Some(org) if env.body().to.contains(&org.organ_id) => vec![org.organ_id.clone()],
                Some(org) => {
                    return Err(HubError::StatusRefused(format!(
                        "{} is not a recipient of {document}",
                        org.organ_id
                    )));
                }
                None => env.body().to.clone(),
            };
            (asked.clone(), asked)
        } else {
            if party != Party::Recipient {
                return Err(HubError::StatusRefused(format!(
                    "status {code} is sent by a recipient of {document}"
                )));
            }
            (Vec::new(), vec![env.body().from.clone()])
        };
        if code != StatusCode::RecallRequested {
            // A DMS retrying a status whose answer it lost gets the status it posted.
            let (document_id, who) = (document, tenant.clone());
            let last = blocking(&api, move |s| {
                let key = records::id_agency_key(&document_id, &who);
                let Some(value) = s.inner.store.get(Column::Statuses, &key)? else {
                    return Ok(None);
                };
                let record: StatusRecord =
                    records::decode(Column::Statuses, &value).map_err(HubError::internal)?;
                Ok(record.history.last().map(|e| (e.code, e.id)))
            })
            .await?;
            if let Some((last_code, last_id)) = last
                && last_code == code
            {
                tracing::info!(%tenant, %document, status = %last_id, %code, "retried status answered with the earlier DocId");
                return Ok(ok_with("DocId", last_id.to_string().into()));
            }
        }
        let content = if detail.is_empty() {
            Content::None
        } else {
            let bytes = detail
                .to_bytes()
                .map_err(|e| HubError::MalformedEdxml(format!("Status: {e}")))?;
            api.inner
                .send
                .seal(&tenant, &sealed_for, &bytes)
                .await
                .map_err(send_error)?
        };
        let id = api
            .inner
            .driver
            .post_status(StatusPost {
                request: 0,
                tenant: tenant.clone(),
                document,
                code,
                to,
                content,
            })
            .await
            .map_err(driver_error)?;
        tracing::info!(%tenant, %document, status = %id, %code, "status sent through the hub listener");
        Ok(ok_with("DocId", id.to_string().into()))
    }

    /// `getReceivedEdocList`.
    pub async fn received_list(&self) -> Result<Response, HubError> {
        let stream = self.stream()?;
        let date = |name: &str| -> Result<Option<u64>, HubError> {
            self.params
                .get(name)
                .map(|v| {
                    parse_list_time(v).ok_or_else(|| {
                        HubError::param(name, format!("{v:?}; expected dd/MM/yyyy HH:mm:ss"))
                    })
                })
                .transpose()
        };
        let (from_ms, to_ms) = (date("fromDate")?, date("toDate")?);
        let mut data = Vec::new();
        for tenant in self.read_tenants()? {
            let room = self.hub.config.max_page.saturating_sub(data.len());
            if room == 0 {
                break;
            }
            let in_range = |p: &Pending| {
                from_ms.is_none_or(|f| p.created_ms >= f) && to_ms.is_none_or(|t| p.created_ms <= t)
            };
            for p in self
                .hub
                .state
                .pending(&tenant, stream, room, in_range)
                .await?
            {
                data.push(json!({
                    "docId": p.id.to_string(),
                    "serviceType": "eDoc",
                    "messageType": stream.name(),
                    "created_time": format_list_time(p.created_ms),
                    "updated_time": format_list_time(p.updated_ms),
                    "from": p.from.to_string(),
                    "to": tenant.to_string(),
                    "status": p.ack.as_deref().unwrap_or("initial"),
                    "status_desc": p.description.as_deref().unwrap_or(""),
                }));
            }
        }
        Ok(ok_with("data", Value::Array(data)))
    }

    /// `getEdoc` (base64 in `data`) and `downloadEdoc` (`raw`: the edXML as the body).
    pub async fn get_edoc(&self, raw: bool) -> Result<Response, HubError> {
        let id = content_id_param(self.params)?;
        let tenants = self.system.tenants().to_vec();
        let xml = self
            .api()
            .blocking(move |s| Ok(render(s, &id, &tenants)))
            .await??;
        if raw {
            let mut response = xml.into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            return Ok(response);
        }
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&xml);
        Ok(ok_with("data", encoded.into()))
    }

    /// `updateStatus`.
    pub async fn update_status(&self) -> Result<Response, HubError> {
        let id = content_id_param(self.params)?;
        let status = self.params.require("status")?.to_ascii_lowercase();
        if !matches!(status.as_str(), "done" | "fail" | "processing") {
            return Err(HubError::param(
                "status",
                format!("{status:?}; expected done, fail or processing"),
            ));
        }
        let description = self
            .params
            .get("description")
            .map(|d| d.chars().take(1024).collect());
        for tenant in self.system.tenants() {
            if self
                .hub
                .state
                .acknowledge(tenant, id, &status, description.clone())
                .await?
            {
                tracing::info!(%tenant, %id, %status, "transmission acknowledged");
                return Ok(ok(Map::new()));
            }
        }
        // Not pending: already done (answer OK again), or not this system's at all.
        let tenants = self.system.tenants().to_vec();
        let received = self
            .api()
            .blocking(move |s| {
                Ok(s.envelope(&id)?
                    .is_some_and(|env| tenants.iter().any(|t| env.body().to.contains(t))))
            })
            .await?;
        if received {
            Ok(ok(Map::new()))
        } else {
            Err(HubError::UnknownDocument(id.to_string()))
        }
    }

    /// `getSentEdocList`: one row per recipient.
    pub async fn sent_list(&self) -> Result<Response, HubError> {
        let tenants = self.read_tenants()?;
        let max = self.hub.config.max_page;
        let ids = match self.params.get("docId") {
            Some(_) => vec![content_id_param(self.params)?],
            None => {
                let mut ids = Vec::new();
                for tenant in &tenants {
                    let room = max.saturating_sub(ids.len());
                    ids.extend(self.hub.state.sent_by(tenant, room).await?);
                }
                ids
            }
        };
        let single = self.params.get("docId").is_some();
        let rows = blocking(self.api(), move |s| {
            let mut rows = Vec::new();
            for id in ids {
                let env = match s.envelope(&id)? {
                    Some(env)
                        if env.body().kind.is_document() && tenants.contains(&env.body().from) =>
                    {
                        env
                    }
                    _ if single => return Err(HubError::UnknownDocument(id.to_string())),
                    _ => continue,
                };
                let sent = super::state::sent_blocking(s, &id)?;
                rows.extend(sent_rows(s, &env, sent.as_ref())?);
                if rows.len() >= max {
                    rows.truncate(max);
                    break;
                }
            }
            Ok(rows)
        })
        .await?;
        Ok(ok_with("data", Value::Array(rows)))
    }

    /// `countReceiveEdoc`, `countReceiveStatus`.
    pub async fn count(&self, stream: Stream) -> Result<Response, HubError> {
        let mut count = 0;
        for tenant in self.read_tenants()? {
            count += self.hub.state.count(&tenant, stream, MAX_COUNT).await?;
        }
        Ok(ok_with("count", count.into()))
    }

    /// `getAgenciesList`: the active agencies of the roster in force.
    pub fn agencies(&self) -> Result<Response, HubError> {
        let roster = self.api().roster();
        let data: Vec<Value> = roster
            .agencies
            .iter()
            .filter(|a| a.state == AgencyState::Active)
            .map(|a| {
                json!({
                    "id": a.id.to_string(),
                    "pid": a.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
                    "code": a.id.to_string(),
                    "name": a.name,
                    "mail": "",
                })
            })
            .collect();
        Ok(ok_with("data", Value::Array(data)))
    }
}

/// The sender's rows of `getSentEdocList` for document `env`. Blocking.
fn sent_rows(
    s: &ApiState,
    env: &SignedEnvelope,
    sent: Option<&Sent>,
) -> Result<Vec<Value>, HubError> {
    let id = env.id();
    let body = env.body();
    let records = s.inner.store.scan_range(
        Column::Statuses,
        id.as_bytes(),
        id.as_bytes(),
        lienthong_protocol::envelope::MAX_RECIPIENTS,
    )?;
    let mut by_recipient = std::collections::BTreeMap::new();
    for (key, value) in records {
        if let Some((_, recipient)) = records::split_id_agency_key(&key) {
            let record: StatusRecord =
                records::decode(Column::Statuses, &value).map_err(HubError::internal)?;
            by_recipient.insert(recipient, record);
        }
    }
    let mut rows = Vec::with_capacity(body.to.len());
    for recipient in &body.to {
        let record = by_recipient.get(recipient);
        let arrived = record.and_then(|r| {
            r.history
                .iter()
                .find(|e| e.code == StatusCode::Arrived)
                .map(|e| e.at_ms)
        });
        let ended = record.and_then(|r| r.ended.clone());
        let (send_status, send_desc) = match (&ended, arrived) {
            (Some(reason), None) => ("fail", reason.clone()),
            (_, Some(_)) => ("done", "delivered to the recipient's node".to_owned()),
            (None, None) => ("pending", "on its way to the recipient's node".to_owned()),
        };
        let last = record.and_then(|r| r.history.last()).map(|e| e.code);
        rows.push(json!({
            "serviceType": "eDoc",
            "messageType": "edoc",
            "senderDocId": id.to_string(),
            "receiverDocId": id.to_string(),
            "fromCode": body.from.to_string(),
            "toCode": recipient.to_string(),
            "title": sent.map(|x| x.subject.as_str()).unwrap_or(""),
            "notation": sent.map(|x| x.notation.as_str()).unwrap_or(""),
            "sentTime": format_list_time(body.created_ms),
            "receivedTime": arrived.map(format_list_time).unwrap_or_default(),
            "sendStatus": send_status,
            "sendStatusDesc": send_desc,
            "receiveStatus": last.map(StatusCode::as_str).unwrap_or(""),
            "receiveStatusDesc": last.map(StatusCode::describe).unwrap_or(""),
        }));
    }
    Ok(rows)
}

/// The edXML of received transmission `id` for one of `tenants`: the document, or the
/// status as a status message. Blocking.
fn render(s: &ApiState, id: &ContentId, tenants: &[AgencyId]) -> Result<Vec<u8>, HubError> {
    let unknown = || HubError::UnknownDocument(id.to_string());
    let env = s.envelope(id)?.ok_or_else(unknown)?;
    let body = env.body();
    let tenant = tenants
        .iter()
        .find(|t| body.to.contains(t))
        .ok_or_else(unknown)?;
    if body.kind.is_document() {
        let (_, document) = s.open_document(id, tenant)?;
        return document_to_edxml(&document).map_err(HubError::internal);
    }
    if body.kind != Kind::Status {
        return Err(unknown());
    }
    let status = status_message(s, &env, tenant)?;
    status_to_edxml(&status).map_err(HubError::internal)
}

/// A lienthong status envelope as the QCVN 102 status message its recipient's DMS reads.
/// Blocking.
fn status_message(
    s: &ApiState,
    env: &SignedEnvelope,
    tenant: &AgencyId,
) -> Result<StatusMessage, HubError> {
    let body = env.body();
    let code = body
        .routing
        .status
        .ok_or_else(|| HubError::internal("status envelope without a code"))?;
    let document = body
        .routing
        .refers_to
        .ok_or_else(|| HubError::internal("status envelope without its document"))?;
    let roster = s.roster();
    let org = |id: &AgencyId| Organization {
        organ_id: id.clone(),
        organ_name: roster
            .agency(id)
            .map_or_else(|| id.to_string(), |a| a.name.clone()),
        organ_address: None,
        email: None,
        telephone: None,
    };
    // The recipient of a 13 holds the document; the sender of the document recorded it
    // when its DMS sent it here.
    let reference = match s.document_envelope(&document, tenant) {
        Ok((_, Party::Recipient)) => s
            .open_document(&document, tenant)
            .ok()
            .map(|(_, d)| StatusMessage::reference_to(&d.header)),
        _ => None,
    };
    let reference = match reference {
        Some(r) => r,
        None => match super::state::sent_blocking(s, &document)? {
            Some(sent) => Reference {
                document_id: sent.document_id,
                organ_id: sent.tenant,
                code: Some(sent.notation),
                promulgation_date: Some(sent.promulgation_date),
            },
            None => match s.inner.send.sent_reference(&document).ok().flatten() {
                Some(reference) => reference,
                None => Reference {
                    document_id: document.to_string(),
                    organ_id: if code == StatusCode::RecallRequested {
                        body.from.clone()
                    } else {
                        tenant.clone()
                    },
                    code: None,
                    promulgation_date: None,
                },
            },
        },
    };
    let detail = s.status_detail(&env.id(), tenant).unwrap_or_default();
    let mut message =
        StatusMessage::new(org(&body.from), reference, code, body.created_ms).with_to(org(tenant));
    if let Some(reason) = detail.reason {
        message = message.with_description(reason);
    }
    if let Some(assignee) = detail.assignee {
        message = message.with_staff(StaffInfo::person(assignee, None));
    }
    if code.needs_detail() && message.detail().is_none() {
        message = message.with_description(code.describe());
    }
    Ok(message)
}
