//! The document itself, aligned with edXML (QCVN 102:2016): the header fields an agency's
//! DMS exchanges, the business types, attachments, and the limits on each.
//!
//! A [`Document`] is what gets sealed for the recipients (its deterministic CBOR is the
//! plaintext of a sealed payload); only the routing subset (type, priority, due date,
//! reference) is copied into the clear envelope. The specialised-CA signature inside an
//! attachment (e.g. a signed PDF) travels untouched.
//!
//! Every struct here declares its fields in deterministic-CBOR key order (shorter names
//! first, then bytewise), so serde writes canonical bytes at the first try and
//! [`cbor::to_canonical`] never has to rebuild and sort the maps (that took most of a
//! document's encoding time on the send path).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::agency::AgencyId;
use crate::cbor::{self, CborError};
use crate::envelope::Kind;

/// Longest short text field (names, codes, notations), in bytes.
pub const MAX_SHORT_TEXT: usize = 512;
/// Longest long text field (subject, content summary), in bytes.
pub const MAX_LONG_TEXT: usize = 64 * 1024;
/// Most attachments on one document.
pub const MAX_ATTACHMENTS: usize = 64;
/// Most recipients named in the header.
pub const MAX_HEADER_RECIPIENTS: usize = 1024;
/// Largest encoded document (header and attachments), in bytes.
pub const MAX_DOCUMENT_LEN: usize = 60 * 1024 * 1024;

/// edXML business type (`TraceHeaderList/Bussiness/BussinessDocType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusinessType {
    /// 0: a new document.
    #[default]
    New,
    /// 1: revokes an earlier document.
    Revoke,
    /// 2: updates an earlier document.
    Update,
    /// 3: replaces an earlier document.
    Replace,
}

impl BusinessType {
    /// The edXML numeric code.
    pub fn code(self) -> u8 {
        match self {
            Self::New => 0,
            Self::Revoke => 1,
            Self::Update => 2,
            Self::Replace => 3,
        }
    }

    /// From the edXML numeric code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::New),
            1 => Some(Self::Revoke),
            2 => Some(Self::Update),
            3 => Some(Self::Replace),
            _ => None,
        }
    }

    /// The envelope kind that carries a document of this business type.
    pub fn kind(self) -> Kind {
        match self {
            Self::New => Kind::Document,
            Self::Revoke => Kind::Revoke,
            Self::Update => Kind::Update,
            Self::Replace => Kind::Replace,
        }
    }

    /// The business type of a document envelope of `kind` (`New` for any other kind).
    pub fn of_kind(kind: Kind) -> Self {
        match kind {
            Kind::Revoke => Self::Revoke,
            Kind::Update => Self::Update,
            Kind::Replace => Self::Replace,
            Kind::Document | Kind::Status | Kind::Roster => Self::New,
        }
    }
}

/// An organisation as edXML describes it (From, To).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// OrganId: the agency code.
    pub organ_id: AgencyId,
    /// Telephone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telephone: Option<String>,
    /// OrganName.
    pub organ_name: String,
    /// OrganAdd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organ_address: Option<String>,
}

/// Code (CodeNumber / CodeNotation), e.g. `123` / `QĐ-TTg`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub number: String,
    pub notation: String,
}

/// PromulgationInfo: where and when the document was issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promulgation {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub place: String,
}

/// SignerInfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signer {
    pub position: String,
    pub full_name: String,
    pub competence: String,
}

/// ResponseFor / the document a revoke, update or replace refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reference {
    /// Its code, as text (`123/QĐ-TTg`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Its issuing agency.
    pub organ_id: AgencyId,
    /// The earlier document's DocumentId.
    pub document_id: String,
    /// Its promulgation date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promulgation_date: Option<String>,
}

/// The edXML MessageHeader fields lienthong carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentHeader {
    pub to: Vec<Organization>,
    pub code: Code,
    pub from: Organization,
    pub signer: Signer,
    /// Content (summary or full text when there is no attachment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Subject (trích yếu).
    pub subject: String,
    /// Business type and, for 1–3, the document it acts on.
    #[serde(default)]
    pub business: BusinessType,
    /// DueDate, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    /// OtherInfo/Priority 0–4.
    #[serde(default)]
    pub priority: u8,
    /// ToPlaces (nơi nhận), free text.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_places: Vec<String>,
    /// DocumentId: `OrganId,yyyy/MM/dd,Number/Notation`.
    pub document_id: String,
    /// OtherInfo/PageAmount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_amount: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_ref: Option<Reference>,
    pub promulgation: Promulgation,
    /// ResponseFor: the earlier document this one answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_for: Option<Reference>,
    /// DocumentType/Type (the national document type code).
    pub document_type: String,
    /// SteeringType (0 none, 1 directing, 2 reporting…).
    #[serde(default)]
    pub steering_type: u8,
    /// BussinessDocReason: why an earlier document is revoked, updated or replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub business_reason: Option<String>,
    /// DocumentType/TypeName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_type_name: Option<String>,
    /// OtherInfo/SphereOfPromulgation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sphere_of_promulgation: Option<String>,
}

/// An attachment (usually the signed PDF).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// MIME type, e.g. `application/pdf`.
    pub mime: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A complete document: the plaintext that is sealed for the recipients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub header: DocumentHeader,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// Why a document was refused; `field` is the path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("document field `{field}`: {problem}")]
    Field { field: String, problem: String },
    #[error(transparent)]
    Encoding(#[from] CborError),
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> DocumentError {
    DocumentError::Field {
        field: field.into(),
        problem: problem.into(),
    }
}

// Field names are `Display` (often `format_args!`), written out only for an error: a valid
// document is checked on every send, twice, and used to build a dozen names for nothing.
fn text(field: impl fmt::Display, value: &str, max: usize) -> Result<(), DocumentError> {
    if value.trim().is_empty() {
        return Err(bad(field.to_string(), "is required"));
    }
    if value.len() > max {
        return Err(bad(
            field.to_string(),
            format!("is {} bytes; the limit is {max}", value.len()),
        ));
    }
    Ok(())
}

fn opt_text(
    field: impl fmt::Display,
    value: &Option<String>,
    max: usize,
) -> Result<(), DocumentError> {
    value.as_deref().map_or(Ok(()), |v| text(field, v, max))
}

fn date(field: impl fmt::Display, value: &str) -> Result<(), DocumentError> {
    let ok = value.len() == 10
        && value.bytes().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && value
            .get(5..7)
            .and_then(|m| m.parse::<u8>().ok())
            .is_some_and(|m| (1..=12).contains(&m))
        && value
            .get(8..10)
            .and_then(|d| d.parse::<u8>().ok())
            .is_some_and(|d| (1..=31).contains(&d));
    if ok {
        Ok(())
    } else {
        Err(bad(
            field.to_string(),
            format!("{value:?} is not a date YYYY-MM-DD"),
        ))
    }
}

impl Organization {
    fn validate(&self, at: impl fmt::Display) -> Result<(), DocumentError> {
        text(
            format_args!("{at}.organ_name"),
            &self.organ_name,
            MAX_SHORT_TEXT,
        )?;
        opt_text(
            format_args!("{at}.organ_address"),
            &self.organ_address,
            MAX_SHORT_TEXT,
        )?;
        opt_text(format_args!("{at}.email"), &self.email, MAX_SHORT_TEXT)?;
        opt_text(
            format_args!("{at}.telephone"),
            &self.telephone,
            MAX_SHORT_TEXT,
        )
    }
}

impl Reference {
    fn validate(&self, at: impl fmt::Display) -> Result<(), DocumentError> {
        text(
            format_args!("{at}.document_id"),
            &self.document_id,
            MAX_SHORT_TEXT,
        )?;
        opt_text(format_args!("{at}.code"), &self.code, MAX_SHORT_TEXT)?;
        self.promulgation_date
            .as_deref()
            .map_or(Ok(()), |d| date(format_args!("{at}.promulgation_date"), d))
    }
}

impl DocumentHeader {
    /// Checks required fields, limits and formats, naming the first offending field.
    pub fn validate(&self) -> Result<(), DocumentError> {
        self.from.validate("from")?;
        if self.to.is_empty() {
            return Err(bad("to", "at least one recipient is required"));
        }
        if self.to.len() > MAX_HEADER_RECIPIENTS {
            return Err(bad(
                "to",
                format!(
                    "{} recipients; the limit is {MAX_HEADER_RECIPIENTS}",
                    self.to.len()
                ),
            ));
        }
        for (i, org) in self.to.iter().enumerate() {
            org.validate(format_args!("to[{i}]"))?;
        }
        text("document_id", &self.document_id, MAX_SHORT_TEXT)?;
        text("code.number", &self.code.number, MAX_SHORT_TEXT)?;
        text("code.notation", &self.code.notation, MAX_SHORT_TEXT)?;
        text(
            "promulgation.place",
            &self.promulgation.place,
            MAX_SHORT_TEXT,
        )?;
        date("promulgation.date", &self.promulgation.date)?;
        text("document_type", &self.document_type, 64)?;
        opt_text(
            "document_type_name",
            &self.document_type_name,
            MAX_SHORT_TEXT,
        )?;
        text("subject", &self.subject, MAX_LONG_TEXT)?;
        opt_text("content", &self.content, MAX_LONG_TEXT)?;
        text("signer.competence", &self.signer.competence, MAX_SHORT_TEXT)?;
        text("signer.position", &self.signer.position, MAX_SHORT_TEXT)?;
        text("signer.full_name", &self.signer.full_name, MAX_SHORT_TEXT)?;
        if let Some(due) = &self.due_date {
            date("due_date", due)?;
        }
        if self.to_places.len() > MAX_HEADER_RECIPIENTS {
            return Err(bad(
                "to_places",
                format!("more than {MAX_HEADER_RECIPIENTS} entries"),
            ));
        }
        for (i, place) in self.to_places.iter().enumerate() {
            text(format_args!("to_places[{i}]"), place, MAX_SHORT_TEXT)?;
        }
        if self.priority > 4 {
            return Err(bad(
                "priority",
                format!("{} is above the highest priority 4", self.priority),
            ));
        }
        opt_text(
            "sphere_of_promulgation",
            &self.sphere_of_promulgation,
            MAX_SHORT_TEXT,
        )?;
        if let Some(r) = &self.response_for {
            r.validate("response_for")?;
        }
        match (self.business, &self.business_ref) {
            (BusinessType::New, Some(_)) => {
                return Err(bad("business_ref", "only for business types 1-3"));
            }
            (BusinessType::New, None) => {}
            (_, None) => {
                return Err(bad(
                    "business_ref",
                    "business types 1-3 name the earlier document",
                ));
            }
            (_, Some(r)) => r.validate("business_ref")?,
        }
        opt_text("business_reason", &self.business_reason, MAX_LONG_TEXT)?;
        Ok(())
    }
}

impl Document {
    /// Validates the header and attachments.
    pub fn validate(&self) -> Result<(), DocumentError> {
        self.header.validate()?;
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(bad(
                "attachments",
                format!(
                    "{} attachments; the limit is {MAX_ATTACHMENTS}",
                    self.attachments.len()
                ),
            ));
        }
        for (i, a) in self.attachments.iter().enumerate() {
            text(
                format_args!("attachments[{i}].name"),
                &a.name,
                MAX_SHORT_TEXT,
            )?;
            if a.name.contains(['/', '\\', '\0']) {
                return Err(bad(
                    format!("attachments[{i}].name"),
                    "must not contain / \\ or NUL",
                ));
            }
            text(format_args!("attachments[{i}].mime"), &a.mime, 128)?;
            opt_text(
                format_args!("attachments[{i}].description"),
                &a.description,
                MAX_SHORT_TEXT,
            )?;
        }
        Ok(())
    }

    /// The plaintext to seal: deterministic CBOR, validated first.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DocumentError> {
        self.validate()?;
        let bytes = cbor::to_canonical(self)?;
        if bytes.len() > MAX_DOCUMENT_LEN {
            return Err(CborError::TooLarge {
                len: bytes.len(),
                max: MAX_DOCUMENT_LEN,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Decodes and validates an opened payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DocumentError> {
        let doc: Self = cbor::from_canonical(bytes, MAX_DOCUMENT_LEN)?;
        doc.validate()?;
        Ok(doc)
    }
}

/// A minimal valid document, for tests and examples across the workspace.
pub fn example_document(from: &AgencyId, to: &[AgencyId], subject: &str) -> Document {
    let org = |id: &AgencyId| Organization {
        organ_id: id.clone(),
        organ_name: format!("Agency {id}"),
        organ_address: None,
        email: None,
        telephone: None,
    };
    Document {
        header: DocumentHeader {
            from: org(from),
            to: to.iter().map(org).collect(),
            document_id: format!("{from},2026/11/23,123/QĐ-UBND"),
            code: Code {
                number: "123".into(),
                notation: "QĐ-UBND".into(),
            },
            promulgation: Promulgation {
                place: "Hà Nội".into(),
                date: "2026-11-23".into(),
            },
            document_type: "1".into(),
            document_type_name: Some("Quyết định".into()),
            subject: subject.into(),
            content: None,
            signer: Signer {
                competence: "TM. UBND".into(),
                position: "Chủ tịch".into(),
                full_name: "Nguyễn Văn A".into(),
            },
            due_date: None,
            to_places: vec![],
            priority: 0,
            sphere_of_promulgation: None,
            page_amount: Some(1),
            steering_type: 0,
            response_for: None,
            business: BusinessType::New,
            business_ref: None,
            business_reason: None,
        },
        attachments: vec![],
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::type_complexity)]
    use super::*;

    fn doc() -> Document {
        let from = AgencyId::parse("000.00.00.G22").unwrap();
        let to = [AgencyId::parse("000.00.00.H41").unwrap()];
        let mut d = example_document(&from, &to, "Về việc triển khai trục liên thông");
        d.attachments.push(Attachment {
            name: "qd.pdf".into(),
            mime: "application/pdf".into(),
            description: None,
            data: b"%PDF-1.7 signed".to_vec(),
        });
        d
    }

    /// Fields declared in canonical key order (see the module's documentation): serde's
    /// own output, with every optional field present, is already canonical.
    #[test]
    fn fields_are_declared_in_canonical_key_order() {
        let mut d = doc();
        let reference = Reference {
            code: Some("1/QĐ".into()),
            organ_id: d.header.from.organ_id.clone(),
            document_id: "x".into(),
            promulgation_date: Some("2026-11-01".into()),
        };
        let h = &mut d.header;
        h.from.organ_address = Some("1 Hoàng Hoa Thám".into());
        h.from.email = Some("vp@example.gov.vn".into());
        h.from.telephone = Some("024".into());
        h.content = Some("tóm tắt".into());
        h.due_date = Some("2026-12-01".into());
        h.to_places = vec!["Bộ Nội vụ".into()];
        h.sphere_of_promulgation = Some("toàn quốc".into());
        h.response_for = Some(reference.clone());
        h.business = BusinessType::Replace;
        h.business_ref = Some(reference);
        h.business_reason = Some("sai sót".into());
        d.attachments[0].description = Some("bản ký số".into());
        let mut first_try = Vec::new();
        ciborium::into_writer(&d, &mut first_try).unwrap();
        cbor::check_canonical(&first_try, usize::MAX).unwrap();
        assert_eq!(first_try, d.to_bytes().unwrap());
    }

    #[test]
    fn round_trips_through_canonical_cbor() {
        let d = doc();
        assert_eq!(Document::from_bytes(&d.to_bytes().unwrap()).unwrap(), d);
    }

    #[test]
    fn errors_name_the_field() {
        let cases: Vec<(Box<dyn Fn(&mut Document)>, &str)> = vec![
            (
                Box::new(|d| d.header.subject = " ".into()),
                "`subject`: is required",
            ),
            (Box::new(|d| d.header.to.clear()), "`to`"),
            (
                Box::new(|d| d.header.promulgation.date = "23/11/2026".into()),
                "`promulgation.date`",
            ),
            (Box::new(|d| d.header.priority = 9), "`priority`"),
            (
                Box::new(|d| d.header.business = BusinessType::Replace),
                "`business_ref`",
            ),
            (
                Box::new(|d| d.attachments[0].name = "../x".into()),
                "`attachments[0].name`",
            ),
            (
                Box::new(|d| d.header.code.notation = "x".repeat(600)),
                "limit is 512",
            ),
            // Names built from a prefix and an index.
            (
                Box::new(|d| d.header.to[0].organ_name = String::new()),
                "`to[0].organ_name`: is required",
            ),
            (
                Box::new(|d| d.header.from.email = Some("e".repeat(600))),
                "`from.email`: is 600 bytes",
            ),
            (
                Box::new(|d| {
                    d.header.response_for = Some(Reference {
                        document_id: "000.00.00.G22,2026/11/01,1/QĐ-TTg".into(),
                        organ_id: d.header.from.organ_id.clone(),
                        code: None,
                        promulgation_date: Some("2026-13-01".into()),
                    })
                }),
                "`response_for.promulgation_date`",
            ),
            (
                Box::new(|d| d.attachments[0].mime = String::new()),
                "`attachments[0].mime`",
            ),
        ];
        for (mutate, why) in cases {
            let mut d = doc();
            mutate(&mut d);
            let err = d.validate().unwrap_err().to_string();
            assert!(err.contains(why), "expected {why:?} in {err}");
        }
    }

    #[test]
    fn business_codes() {
        for code in 0..4 {
            assert_eq!(BusinessType::from_code(code).unwrap().code(), code);
        }
        assert_eq!(BusinessType::from_code(4), None);
    }
}
