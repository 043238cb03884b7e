//! edXML (QCVN 102:2016) codec: documents and status messages to and from the XML that
//! agencies' document management systems and the national hub exchange. Pure: bytes in,
//! values out, no I/O.
//!
//! * [`document_from_edxml`] reads an edXML envelope (`edXMLEnvelope/edXMLHeader` with
//!   `MessageHeader` and `TraceHeaderList/Bussiness`, the `edXMLBody/edXMLManifest` and the
//!   `AttachmentEncoded/Attachment` elements) into a [`Document`];
//!   [`document_to_edxml`] writes one back.
//! * [`status_from_edxml`] and [`status_to_edxml`] do the same for status messages
//!   (`edXMLHeader/Status`, codes 01–06, 13, 15, 16) and [`StatusMessage`].
//! * [`from_edxml`] tells the two apart, for callers that receive either.
//!
//! Reading is liberal where senders differ and strict where meaning is at stake: any
//! namespace prefix (or the default namespace) bound to [`EDXML_NAMESPACE`] is accepted,
//! as is an optional `edXML` wrapper element, unqualified `AttachmentEncoded` elements,
//! surrounding whitespace, base64 with line breaks and the usual date forms; a required
//! element that is missing or empty, an agency code that does not parse, a bad date or
//! bad base64 is an [`EdxmlError`] naming the element path
//! (`MessageHeader/From/OrganId: missing`). Every size is checked while reading, before
//! anything grows: the input against [`MAX_EDXML_LEN`], element count and depth, the
//! number of attachments against [`crate::document::MAX_ATTACHMENTS`] and each text
//! against the document's limits. Nothing here panics on input.
//!
//! Reading goes through quick-xml's namespace-aware event reader into a small bounded
//! tree (`tree`), not serde, so that an error can name the element and limits apply
//! before allocation; writing uses quick-xml's serde serializer (never string
//! concatenation) and produces the `edXML:` prefixed form the hub's SDK writes.

mod dates;
mod doc;
mod status;
mod tree;

pub use doc::{document_from_edxml, document_to_edxml};
pub use status::{StaffInfo, StatusMessage, status_from_edxml, status_to_edxml};

use crate::agency::AgencyId;
use crate::document::{Document, DocumentError, MAX_DOCUMENT_LEN, MAX_SHORT_TEXT, Organization};
use tree::{Element, Ns};

/// The QCVN 102:2016 namespace.
pub const EDXML_NAMESPACE: &str = "http://www.mic.gov.vn/TBT/QCVN_102_2016";

/// Largest edXML input accepted, in bytes: the largest document with its attachments in
/// base64 (4/3 of [`MAX_DOCUMENT_LEN`]) plus room for the header and line breaks.
pub const MAX_EDXML_LEN: usize = MAX_DOCUMENT_LEN / 3 * 4 + 4 * 1024 * 1024;

// Room for the largest document in base64 wrapped at 76 columns with CRLF.
const _: () = assert!(MAX_EDXML_LEN > MAX_DOCUMENT_LEN / 3 * 4 + MAX_DOCUMENT_LEN / 76 * 2);

/// Why an edXML input was refused (or a value could not be written as edXML).
///
/// Every variant but `Malformed` names the element path, e.g. `MessageHeader/From/OrganId`
/// or `AttachmentEncoded/Attachment[2]/ContentTransferEncoded`; see [`EdxmlError::path`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdxmlError {
    /// The input is not well-formed XML (or not UTF-8, or has a DTD).
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed { position: u64, reason: String },
    /// The root element is not an edXML envelope, or a required element is in another
    /// namespace.
    #[error("{path}: expected an element in namespace {EDXML_NAMESPACE}, found {found}")]
    WrongNamespace { path: String, found: String },
    /// A required element is absent or empty.
    #[error("{path}: missing")]
    Missing { path: String },
    /// An element holds a value that does not parse or is not allowed.
    #[error("{path}: invalid value: {reason}")]
    Invalid { path: String, reason: String },
    /// `BussinessDocType` is not 0, 1, 2 or 3.
    #[error(
        "{path}: unknown business type {value:?}; expected 0 (new), 1 (revoke), 2 (update) or 3 (replace)"
    )]
    UnknownBusinessType { path: String, value: String },
    /// A size or count limit was exceeded.
    #[error("{path}: {what} is {actual}; the limit is {limit}")]
    TooLarge {
        path: String,
        what: &'static str,
        actual: usize,
        limit: usize,
    },
    /// The value to export does not validate.
    #[error("cannot export: {0}")]
    Export(DocumentError),
    /// The XML writer refused a value.
    #[error("cannot write edXML: {0}")]
    Write(String),
}

impl EdxmlError {
    /// A short stable name for the kind of error (`malformed`, `wrong-namespace`,
    /// `missing`, `invalid`, `unknown-business-type`, `too-large`, `export`, `write`), for
    /// error codes and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::WrongNamespace { .. } => "wrong-namespace",
            Self::Missing { .. } => "missing",
            Self::Invalid { .. } => "invalid",
            Self::UnknownBusinessType { .. } => "unknown-business-type",
            Self::TooLarge { .. } => "too-large",
            Self::Export(_) => "export",
            Self::Write(_) => "write",
        }
    }

    /// The offending element path, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::WrongNamespace { path, .. }
            | Self::Missing { path }
            | Self::Invalid { path, .. }
            | Self::UnknownBusinessType { path, .. }
            | Self::TooLarge { path, .. } => Some(path),
            Self::Malformed { .. } | Self::Export(_) | Self::Write(_) => None,
        }
    }
}

/// What an edXML input turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdxmlMessage {
    /// A document (`edXMLHeader/MessageHeader` without a `StatusCode`).
    Document(Box<Document>),
    /// A status message (`edXMLHeader/Status`).
    Status(Box<StatusMessage>),
}

/// Reads either a document or a status message, whichever the input holds.
pub fn from_edxml(xml: &[u8]) -> Result<EdxmlMessage, EdxmlError> {
    let root = tree::parse(xml)?;
    let (envelope, header) = envelope_header(&root)?;
    if status::status_element(header).is_some() {
        status::read_status(header).map(|s| EdxmlMessage::Status(Box::new(s)))
    } else {
        doc::read_document(&root, envelope, header).map(|d| EdxmlMessage::Document(Box::new(d)))
    }
}

// ---- reading helpers shared by documents and statuses ----

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

fn ns_name(ns: &Ns) -> String {
    match ns {
        Ns::Edxml => EDXML_NAMESPACE.to_owned(),
        Ns::Unbound => "no namespace".to_owned(),
        Ns::Other(uri) => uri.clone(),
    }
}

/// The `edXMLEnvelope` and its `edXMLHeader`: the root may be `edXMLEnvelope` or an
/// `edXML` wrapper around it, in the edXML namespace (the wrapper may also be unqualified).
fn envelope_header(root: &Element) -> Result<(&Element, &Element), EdxmlError> {
    let envelope = if root.name == "edXMLEnvelope" {
        root
    } else if root.name == "edXML" && root.is_edxml_or_unbound() {
        match root.child("edXMLEnvelope") {
            Some(env) => env,
            None => return Err(missing_or_foreign(root, "", "edXMLEnvelope")),
        }
    } else {
        return Err(EdxmlError::WrongNamespace {
            path: root.name.clone(),
            found: format!(
                "<{}> in {}; expected edXMLEnvelope or edXML",
                root.name,
                ns_name(&root.ns)
            ),
        });
    };
    if envelope.ns != Ns::Edxml {
        return Err(EdxmlError::WrongNamespace {
            path: "edXMLEnvelope".into(),
            found: ns_name(&envelope.ns),
        });
    }
    match envelope.child("edXMLHeader") {
        Some(h) if h.ns == Ns::Edxml => Ok((envelope, h)),
        Some(h) => Err(EdxmlError::WrongNamespace {
            path: "edXMLEnvelope/edXMLHeader".into(),
            found: ns_name(&h.ns),
        }),
        None => Err(missing_or_foreign(envelope, "edXMLEnvelope", "edXMLHeader")),
    }
}

fn missing_or_foreign(parent: &Element, parent_path: &str, name: &str) -> EdxmlError {
    let path = join(parent_path, name);
    match parent.foreign_child(name) {
        Some(el) => EdxmlError::WrongNamespace {
            path,
            found: ns_name(&el.ns),
        },
        None => EdxmlError::Missing { path },
    }
}

/// A required child element.
fn required<'a>(
    parent: &'a Element,
    parent_path: &str,
    name: &str,
) -> Result<&'a Element, EdxmlError> {
    parent
        .child(name)
        .ok_or_else(|| missing_or_foreign(parent, parent_path, name))
}

fn check_len(path: &str, value: &str, max: usize) -> Result<(), EdxmlError> {
    if value.len() > max {
        return Err(EdxmlError::TooLarge {
            path: path.to_owned(),
            what: "text length in bytes",
            actual: value.len(),
            limit: max,
        });
    }
    Ok(())
}

/// The trimmed text of a required child, non-empty and at most `max` bytes.
fn required_text(
    parent: &Element,
    parent_path: &str,
    name: &str,
    max: usize,
) -> Result<String, EdxmlError> {
    let el = required(parent, parent_path, name)?;
    let path = join(parent_path, name);
    let text = el.trimmed_text();
    if text.is_empty() {
        return Err(EdxmlError::Missing { path });
    }
    check_len(&path, text, max)?;
    Ok(text.to_owned())
}

/// The trimmed text of an optional child; absent and empty are both `None`.
fn optional_text(
    parent: &Element,
    parent_path: &str,
    name: &str,
    max: usize,
) -> Result<Option<String>, EdxmlError> {
    let Some(el) = parent.child(name) else {
        return Ok(None);
    };
    let text = el.trimmed_text();
    if text.is_empty() {
        return Ok(None);
    }
    check_len(&join(parent_path, name), text, max)?;
    Ok(Some(text.to_owned()))
}

fn invalid(path: impl Into<String>, reason: impl Into<String>) -> EdxmlError {
    EdxmlError::Invalid {
        path: path.into(),
        reason: reason.into(),
    }
}

fn parse_agency(path: &str, text: &str) -> Result<AgencyId, EdxmlError> {
    AgencyId::parse_any(text).map_err(|e| invalid(path, e.to_string()))
}

/// A required `OrganId` child.
fn required_agency(parent: &Element, parent_path: &str) -> Result<AgencyId, EdxmlError> {
    let text = required_text(parent, parent_path, "OrganId", MAX_SHORT_TEXT)?;
    parse_agency(&join(parent_path, "OrganId"), &text)
}

/// An optional date child, as `YYYY-MM-DD`.
fn optional_date(
    parent: &Element,
    parent_path: &str,
    name: &str,
) -> Result<Option<String>, EdxmlError> {
    let Some(text) = optional_text(parent, parent_path, name, MAX_SHORT_TEXT)? else {
        return Ok(None);
    };
    dates::parse_date(&text)
        .map(|d| Some(d.iso()))
        .ok_or_else(|| {
            invalid(
                join(parent_path, name),
                format!("{text:?} is not a date (yyyy/MM/dd)"),
            )
        })
}

/// An optional small number child.
fn optional_number<T: std::str::FromStr>(
    parent: &Element,
    parent_path: &str,
    name: &str,
) -> Result<Option<T>, EdxmlError> {
    let Some(text) = optional_text(parent, parent_path, name, 32)? else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        invalid(
            join(parent_path, name),
            format!("{text:?} is not a number in range"),
        )
    })
}

/// An organisation (`From`, `To`): OrganId required, OrganName required.
fn read_organization(el: &Element, path: &str) -> Result<Organization, EdxmlError> {
    Ok(Organization {
        organ_id: required_agency(el, path)?,
        organ_name: required_text(el, path, "OrganName", MAX_SHORT_TEXT)?,
        organ_address: optional_text(el, path, "OrganAdd", MAX_SHORT_TEXT)?,
        email: optional_text(el, path, "Email", MAX_SHORT_TEXT)?,
        telephone: optional_text(el, path, "Telephone", MAX_SHORT_TEXT)?,
    })
}

/// Whether every character may appear in an XML 1.0 document.
fn xml_safe(value: &str) -> bool {
    value.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    })
}

// ---- writing helpers ----

/// `From`/`To` as written.
#[derive(serde::Serialize)]
struct OrganizationOut<'a> {
    #[serde(rename = "edXML:OrganId")]
    organ_id: &'a str,
    #[serde(rename = "edXML:OrganName")]
    organ_name: &'a str,
    #[serde(rename = "edXML:OrganAdd", skip_serializing_if = "Option::is_none")]
    organ_address: Option<&'a str>,
    #[serde(rename = "edXML:Email", skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(rename = "edXML:Telephone", skip_serializing_if = "Option::is_none")]
    telephone: Option<&'a str>,
}

impl<'a> From<&'a Organization> for OrganizationOut<'a> {
    fn from(org: &'a Organization) -> Self {
        Self {
            organ_id: org.organ_id.as_str(),
            organ_name: &org.organ_name,
            organ_address: org.organ_address.as_deref(),
            email: org.email.as_deref(),
            telephone: org.telephone.as_deref(),
        }
    }
}

/// Serializes `value` as the root element `root`, with the XML declaration.
fn write_xml<T: serde::Serialize>(root: &str, value: &T) -> Result<Vec<u8>, EdxmlError> {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut serializer = quick_xml::se::Serializer::with_root(&mut out, Some(root))
        .map_err(|e| EdxmlError::Write(e.to_string()))?;
    serializer.indent(' ', 2);
    value
        .serialize(serializer)
        .map_err(|e| EdxmlError::Write(e.to_string()))?;
    out.push('\n');
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xml_safe_refuses_control_characters() {
        assert!(xml_safe("Về việc\ttriển khai\n"));
        assert!(!xml_safe("a\u{1}b"));
        assert!(!xml_safe("\u{FFFE}"));
    }
}
