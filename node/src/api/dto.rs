//! The JSON shapes of the API (with their OpenAPI schemas) and their conversions to and
//! from the protocol's types. Field names follow the edXML-aligned [`DocumentHeader`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::document::{
    Attachment, BusinessType, Code, Document, DocumentHeader, MAX_ATTACHMENTS, Organization,
    Promulgation, Reference, Signer,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::problem::Problem;

/// An organisation (edXML From / To).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationJson {
    /// OrganId: the agency code, e.g. `000.00.00.H41`.
    #[schema(value_type = String, example = "000.00.00.H41")]
    pub organ_id: AgencyId,
    /// OrganName.
    pub organ_name: String,
    /// OrganAdd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organ_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone: Option<String>,
}

/// Code: number and notation (`123` / `QĐ-UBND`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeJson {
    pub number: String,
    pub notation: String,
}

/// PromulgationInfo: place and date (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromulgationJson {
    pub place: String,
    #[schema(example = "2026-11-23")]
    pub date: String,
}

/// SignerInfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignerJson {
    pub competence: String,
    pub position: String,
    pub full_name: String,
}

/// A reference to an earlier document (ResponseFor, or the document a revoke, update or
/// replace acts on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceJson {
    /// The earlier document's DocumentId (`OrganId,yyyy/MM/dd,Number/Notation`).
    pub document_id: String,
    /// Its issuing agency.
    #[schema(value_type = String)]
    pub organ_id: AgencyId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promulgation_date: Option<String>,
}

/// Business type (edXML Bussiness/BussinessDocType 0–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BusinessJson {
    #[default]
    New,
    Revoke,
    Update,
    Replace,
}

/// The edXML MessageHeader fields of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderJson {
    /// The sending agency (must be a tenant the token acts for).
    pub from: OrganizationJson,
    /// The recipients (1 to 1,024 agencies of the roster).
    pub to: Vec<OrganizationJson>,
    /// DocumentId: `OrganId,yyyy/MM/dd,Number/Notation`; also the default idempotency key.
    pub document_id: String,
    pub code: CodeJson,
    pub promulgation: PromulgationJson,
    /// DocumentType/Type (national document type code, at most 64 bytes).
    pub document_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_type_name: Option<String>,
    /// Subject (trích yếu).
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub signer: SignerJson,
    /// DueDate, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_places: Vec<String>,
    /// Priority 0–4.
    #[serde(default)]
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sphere_of_promulgation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_amount: Option<u32>,
    #[serde(default)]
    pub steering_type: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_for: Option<ReferenceJson>,
    /// `new` for `POST /v1/documents`; set by the update, replace and revoke endpoints.
    #[serde(default)]
    pub business: BusinessJson,
    /// The document a revoke, update or replace acts on (its DocumentId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_ref: Option<ReferenceJson>,
}

/// An attachment to send: its bytes in standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttachmentIn {
    /// File name (no `/`, `\` or NUL).
    pub name: String,
    /// MIME type, e.g. `application/pdf`.
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The bytes, standard base64 (with padding).
    pub data: String,
}

/// `POST /v1/documents`: a document to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub header: HeaderJson,
    #[serde(default)]
    pub attachments: Vec<AttachmentIn>,
}

/// A document was accepted: it is durable in this node's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SendResponse {
    /// Content id (CIDv1, base32) of the document's envelope.
    #[schema(example = "bafireib…")]
    pub id: String,
    /// True when this answers a retry of an earlier request (same idempotency key).
    pub duplicate: bool,
}

/// An attachment's description (its bytes are at `…/attachments/{n}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttachmentInfo {
    /// Its index, for `/v1/documents/{id}/attachments/{n}`.
    pub index: usize,
    pub name: String,
    pub content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Size in bytes.
    pub size: u64,
}

/// An opened document: the envelope's facts, the header, the attachments' descriptions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DocumentResponse {
    pub id: String,
    /// `document`, `revoke`, `update` or `replace`.
    pub kind: String,
    #[schema(value_type = String)]
    pub from: AgencyId,
    #[schema(value_type = Vec<String>)]
    pub to: Vec<AgencyId>,
    /// Creation time by the sender's clock (RFC 3339, UTC).
    pub created: String,
    pub created_ms: u64,
    /// The earlier document (content id) an update, replace or revoke acts on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
    pub header: HeaderJson,
    pub attachments: Vec<AttachmentInfo>,
}

/// `POST /v1/documents/{id}/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// Two-character code: 02–06 to move the document forward, 15/16 to answer a recall
    /// or update request (01 is sent by the node itself, 13 by `/recall`).
    #[schema(example = "03")]
    pub code: String,
    /// Why (required for 02 and 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// To whom (required for 04).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

/// `POST /v1/documents/{id}/recall`: status 13 to the recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallRequest {
    /// Why the document is to be taken back or changed.
    pub reason: String,
    /// The recipients asked (all of them when absent or empty).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub recipients: Vec<AgencyId>,
}

/// A status was posted: durable here, on its way to the other party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatusResponse {
    /// Content id of the status envelope.
    pub id: String,
    pub code: String,
}

/// One status in a recipient's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceEntry {
    pub code: String,
    pub description: String,
    /// RFC 3339, UTC, by the signer's clock.
    pub at: String,
    pub at_ms: u64,
    /// Content id of the status envelope.
    pub status_id: String,
    /// The sealed reason, when this caller can open it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The sealed assignee, when this caller can open it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<String>,
}

/// One recipient's copy of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecipientTrace {
    #[schema(value_type = String)]
    pub recipient: AgencyId,
    /// `sent`, a code (`03`), or `recalled`.
    pub stage: String,
    /// A recall or update request (13) waits for 15 or 16.
    pub request_pending: bool,
    /// Why delivery ended without arrival, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    pub history: Vec<TraceEntry>,
}

/// `GET /v1/documents/{id}/trace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TraceResponse {
    pub id: String,
    #[schema(value_type = String)]
    pub sender: AgencyId,
    pub sent: String,
    pub sent_ms: u64,
    pub recipients: Vec<RecipientTrace>,
}

/// One entry of a tenant's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxEntry {
    /// Position in the inbox (the cursor: pass it as `after`).
    pub position: u64,
    /// Content id of the envelope.
    pub id: String,
    /// `document`, `status`, `revoke`, `update` or `replace`.
    pub kind: String,
    #[schema(value_type = String)]
    pub from: AgencyId,
    pub created: String,
    pub created_ms: u64,
    /// DocumentType code (documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_type: Option<String>,
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// The document a status, update, replace or revoke is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refers_to: Option<String>,
    /// The status code (statuses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `GET /v1/inbox`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InboxPage {
    #[schema(value_type = String)]
    pub tenant: AgencyId,
    pub entries: Vec<InboxEntry>,
    /// Pass as `after` for the next page (absent when the page is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// An agency of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgencyJson {
    #[schema(value_type = String)]
    pub id: AgencyId,
    pub name: String,
    pub level: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub parent: Option<AgencyId>,
    /// `active`, `suspended`, `revoked` or `succeeded`.
    pub state: String,
    /// The successor, for `succeeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub successor: Option<AgencyId>,
    /// Whether this node hosts it.
    pub hosted_here: bool,
}

/// `GET /v1/agencies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgenciesResponse {
    /// The roster epoch in force.
    pub epoch: u64,
    pub agencies: Vec<AgencyJson>,
}

/// `GET /v1/health/*`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_deliveries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roster_epoch: Option<u64>,
}

fn org_in(o: OrganizationJson) -> Organization {
    Organization {
        organ_id: o.organ_id,
        organ_name: o.organ_name,
        organ_address: o.organ_address,
        email: o.email,
        telephone: o.telephone,
    }
}

fn org_out(o: Organization) -> OrganizationJson {
    OrganizationJson {
        organ_id: o.organ_id,
        organ_name: o.organ_name,
        organ_address: o.organ_address,
        email: o.email,
        telephone: o.telephone,
    }
}

fn ref_in(r: ReferenceJson) -> Reference {
    Reference {
        document_id: r.document_id,
        organ_id: r.organ_id,
        code: r.code,
        promulgation_date: r.promulgation_date,
    }
}

fn ref_out(r: Reference) -> ReferenceJson {
    ReferenceJson {
        document_id: r.document_id,
        organ_id: r.organ_id,
        code: r.code,
        promulgation_date: r.promulgation_date,
    }
}

impl From<BusinessJson> for BusinessType {
    fn from(b: BusinessJson) -> Self {
        match b {
            BusinessJson::New => Self::New,
            BusinessJson::Revoke => Self::Revoke,
            BusinessJson::Update => Self::Update,
            BusinessJson::Replace => Self::Replace,
        }
    }
}

impl From<BusinessType> for BusinessJson {
    fn from(b: BusinessType) -> Self {
        match b {
            BusinessType::New => Self::New,
            BusinessType::Revoke => Self::Revoke,
            BusinessType::Update => Self::Update,
            BusinessType::Replace => Self::Replace,
        }
    }
}

impl From<HeaderJson> for DocumentHeader {
    fn from(h: HeaderJson) -> Self {
        Self {
            from: org_in(h.from),
            to: h.to.into_iter().map(org_in).collect(),
            document_id: h.document_id,
            code: Code {
                number: h.code.number,
                notation: h.code.notation,
            },
            promulgation: Promulgation {
                place: h.promulgation.place,
                date: h.promulgation.date,
            },
            document_type: h.document_type,
            document_type_name: h.document_type_name,
            subject: h.subject,
            content: h.content,
            signer: Signer {
                competence: h.signer.competence,
                position: h.signer.position,
                full_name: h.signer.full_name,
            },
            due_date: h.due_date,
            to_places: h.to_places,
            priority: h.priority,
            sphere_of_promulgation: h.sphere_of_promulgation,
            page_amount: h.page_amount,
            steering_type: h.steering_type,
            response_for: h.response_for.map(ref_in),
            business: h.business.into(),
            business_ref: h.business_ref.map(ref_in),
            // The JSON API names the reason in the recall/update request, not the header.
            business_reason: None,
        }
    }
}

impl From<DocumentHeader> for HeaderJson {
    fn from(h: DocumentHeader) -> Self {
        Self {
            from: org_out(h.from),
            to: h.to.into_iter().map(org_out).collect(),
            document_id: h.document_id,
            code: CodeJson {
                number: h.code.number,
                notation: h.code.notation,
            },
            promulgation: PromulgationJson {
                place: h.promulgation.place,
                date: h.promulgation.date,
            },
            document_type: h.document_type,
            document_type_name: h.document_type_name,
            subject: h.subject,
            content: h.content,
            signer: SignerJson {
                competence: h.signer.competence,
                position: h.signer.position,
                full_name: h.signer.full_name,
            },
            due_date: h.due_date,
            to_places: h.to_places,
            priority: h.priority,
            sphere_of_promulgation: h.sphere_of_promulgation,
            page_amount: h.page_amount,
            steering_type: h.steering_type,
            response_for: h.response_for.map(ref_out),
            business: h.business.into(),
            business_ref: h.business_ref.map(ref_out),
        }
    }
}

impl SendRequest {
    /// The document to seal: attachments decoded from base64 (count checked first), the
    /// whole validated, each failure naming its field.
    pub fn into_document(self) -> Result<Document, Problem> {
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(Problem::invalid(
                "attachments",
                format!(
                    "{} attachments; the limit is {MAX_ATTACHMENTS}",
                    self.attachments.len()
                ),
            ));
        }
        let mut attachments = Vec::with_capacity(self.attachments.len());
        for (i, a) in self.attachments.into_iter().enumerate() {
            let data = B64.decode(a.data.as_bytes()).map_err(|e| {
                Problem::invalid(
                    format!("attachments[{i}].data"),
                    format!("not standard base64: {e}"),
                )
            })?;
            attachments.push(Attachment {
                name: a.name,
                mime: a.content_type,
                description: a.description,
                data,
            });
        }
        let document = Document {
            header: self.header.into(),
            attachments,
        };
        document.validate().map_err(|e| match e {
            lienthong_protocol::document::DocumentError::Field { field, problem } => {
                let field = if field.starts_with("attachments") {
                    field.replace(".mime", ".content_type")
                } else {
                    format!("header.{field}")
                };
                Problem::invalid(field, problem)
            }
            e => Problem::invalid("header", e.to_string()),
        })?;
        Ok(document)
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC (`2026-11-23T08:15:02.123Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = lienthong_protocol::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_427_702_123), "2026-11-23T09:55:02.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
