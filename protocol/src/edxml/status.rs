//! Status messages: `edXMLHeader/Status` (ResponseFor, From, StatusCode, Description,
//! Timestamp, StaffInfo) to and from [`StatusMessage`].

use serde::{Deserialize, Serialize};

use super::doc::{ReferenceOut, read_reference};
use super::tree::{self, Element};
use super::{
    EDXML_NAMESPACE, EdxmlError, OrganizationOut, dates, envelope_header, invalid, join,
    optional_text, read_organization, required, required_text, write_xml, xml_safe,
};
use crate::document::{DocumentHeader, MAX_LONG_TEXT, MAX_SHORT_TEXT, Organization, Reference};
use crate::status::StatusCode;

/// StaffInfo: who handled the document (for 04, to whom it is assigned).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaffInfo {
    /// Department (phòng, ban).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Staff: the person's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl StaffInfo {
    /// A person, optionally with their department.
    pub fn person(staff: impl Into<String>, department: Option<String>) -> Self {
        Self {
            department,
            staff: Some(staff.into()),
            mobile: None,
            email: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.department.is_none()
            && self.staff.is_none()
            && self.mobile.is_none()
            && self.email.is_none()
    }
}

/// A QCVN 102 status message: one party's processing status of one document.
///
/// Codes 02 (rejected), 13 (recall or update requested) and 16 (request refused) carry
/// their reason in `description`; 04 (assigned) names the assignee in `staff` (or, from
/// senders that only write text, in `description`). See [`StatusMessage::detail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMessage {
    /// From: the agency posting the status.
    pub from: Organization,
    /// To: the agency it is addressed to, when named (the hub routes by `response_for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Organization>,
    /// ResponseFor: the document the status is about.
    pub response_for: Reference,
    /// StatusCode.
    pub code: StatusCode,
    /// Description: the reason (02, 13, 16) or any note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Timestamp, milliseconds since the Unix epoch. edXML carries whole seconds in
    /// Vietnam's local time, so export drops the milliseconds.
    pub timestamp_ms: u64,
    /// StaffInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<StaffInfo>,
}

impl StatusMessage {
    /// A status with no description or staff.
    pub fn new(
        from: Organization,
        response_for: Reference,
        code: StatusCode,
        timestamp_ms: u64,
    ) -> Self {
        Self {
            from,
            to: None,
            response_for,
            code,
            description: None,
            timestamp_ms,
            staff: None,
        }
    }

    /// A status about the document with this header, posted by `from`. For the
    /// recipient's codes it is addressed to the document's sender.
    pub fn for_document(
        header: &DocumentHeader,
        from: Organization,
        code: StatusCode,
        timestamp_ms: u64,
    ) -> Self {
        let mut status = Self::new(from, Self::reference_to(header), code, timestamp_ms);
        if code != StatusCode::RecallRequested {
            status.to = Some(header.from.clone());
        }
        status
    }

    /// The ResponseFor reference naming the document with this header.
    pub fn reference_to(header: &DocumentHeader) -> Reference {
        Reference {
            document_id: header.document_id.clone(),
            organ_id: header.from.organ_id.clone(),
            code: Some(format!("{}/{}", header.code.number, header.code.notation)),
            promulgation_date: Some(header.promulgation.date.clone()),
        }
    }

    /// Sets the description (the reason, for 02, 13 and 16).
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the staff information (the assignee, for 04).
    pub fn with_staff(mut self, staff: StaffInfo) -> Self {
        self.staff = Some(staff);
        self
    }

    /// Addresses the status to `to`.
    pub fn with_to(mut self, to: Organization) -> Self {
        self.to = Some(to);
        self
    }

    /// The reason (02, 13, 16: the description) or the assignee (04: the staff member's
    /// name, else the description): what [`StatusCode::needs_detail`] asks for.
    pub fn detail(&self) -> Option<&str> {
        let staff = self.staff.as_ref().and_then(|s| s.staff.as_deref());
        let description = self.description.as_deref();
        let found = match self.code {
            StatusCode::Assigned => staff.or(description),
            _ => description,
        };
        found.filter(|d| !d.trim().is_empty())
    }

    /// Checks the limits, the reason or assignee the code needs and that every text can
    /// be written as XML; errors name the edXML element.
    pub fn validate(&self) -> Result<(), EdxmlError> {
        let mut texts: Vec<(String, &str)> = vec![
            ("Status/From/OrganName".into(), &self.from.organ_name),
            (
                "Status/ResponseFor/DocumentId".into(),
                &self.response_for.document_id,
            ),
        ];
        if let Some(to) = &self.to {
            texts.push(("Status/To/OrganName".into(), &to.organ_name));
        }
        let optional = [
            ("Status/From/OrganAdd", &self.from.organ_address),
            ("Status/From/Email", &self.from.email),
            ("Status/From/Telephone", &self.from.telephone),
            ("Status/ResponseFor/Code", &self.response_for.code),
        ];
        for (path, value) in optional {
            if let Some(v) = value {
                texts.push((path.into(), v));
            }
        }
        if let Some(staff) = &self.staff {
            for (name, value) in [
                ("Department", &staff.department),
                ("Staff", &staff.staff),
                ("Mobile", &staff.mobile),
                ("Email", &staff.email),
            ] {
                if let Some(v) = value {
                    texts.push((format!("Status/StaffInfo/{name}"), v));
                }
            }
        }
        for (path, value) in texts {
            if value.trim().is_empty() {
                return Err(EdxmlError::Missing { path });
            }
            super::check_len(&path, value, MAX_SHORT_TEXT)?;
            if !xml_safe(value) {
                return Err(invalid(path, "contains a control character"));
            }
        }
        if let Some(d) = &self.description {
            super::check_len("Status/Description", d, MAX_LONG_TEXT)?;
            if !xml_safe(d) {
                return Err(invalid(
                    "Status/Description",
                    "contains a control character",
                ));
            }
        }
        if let Some(date) = &self.response_for.promulgation_date
            && dates::parse_date(date).map(|d| d.iso()).as_deref() != Some(date.as_str())
        {
            return Err(invalid(
                "Status/ResponseFor/PromulgationDate",
                format!("{date:?} is not a date YYYY-MM-DD"),
            ));
        }
        if self.timestamp_ms > dates::MAX_TIMESTAMP_MS {
            return Err(invalid(
                "Status/Timestamp",
                format!("{} ms is after the year 9999", self.timestamp_ms),
            ));
        }
        if self.code.needs_detail() && self.detail().is_none() {
            let path = if self.code == StatusCode::Assigned {
                "Status/StaffInfo/Staff"
            } else {
                "Status/Description"
            };
            return Err(EdxmlError::Missing { path: path.into() });
        }
        Ok(())
    }
}

/// The status element of a header: `Status`, or a `MessageHeader` holding a `StatusCode`
/// (a form some writers use).
pub(super) fn status_element(header: &Element) -> Option<&Element> {
    header.child("Status").or_else(|| {
        header
            .child("MessageHeader")
            .filter(|m| m.child("StatusCode").is_some())
    })
}

/// Reads an edXML status message.
pub fn status_from_edxml(xml: &[u8]) -> Result<StatusMessage, EdxmlError> {
    let root = tree::parse(xml)?;
    let (_, header) = envelope_header(&root)?;
    read_status(header)
}

pub(super) fn read_status(header: &Element) -> Result<StatusMessage, EdxmlError> {
    let Some(el) = status_element(header) else {
        return Err(EdxmlError::Missing {
            path: "edXMLHeader/Status".into(),
        });
    };
    let at = el.name.as_str();
    let code_text = required_text(el, at, "StatusCode", 8)?;
    let code = StatusCode::parse(&code_text)
        .map_err(|e| invalid(join(at, "StatusCode"), e.to_string()))?;
    let timestamp_text = required_text(el, at, "Timestamp", 64)?;
    let timestamp_ms = dates::parse_timestamp(&timestamp_text).ok_or_else(|| {
        invalid(
            join(at, "Timestamp"),
            format!("{timestamp_text:?} is not a timestamp (yyyy/MM/dd HH:mm:ss)"),
        )
    })?;
    let staff = match el.child("StaffInfo") {
        Some(s) => {
            let path = join(at, "StaffInfo");
            let staff = StaffInfo {
                department: optional_text(s, &path, "Department", MAX_SHORT_TEXT)?,
                staff: optional_text(s, &path, "Staff", MAX_SHORT_TEXT)?,
                mobile: optional_text(s, &path, "Mobile", MAX_SHORT_TEXT)?,
                email: optional_text(s, &path, "Email", MAX_SHORT_TEXT)?,
            };
            (!staff.is_empty()).then_some(staff)
        }
        None => None,
    };
    let status = StatusMessage {
        from: read_organization(required(el, at, "From")?, &join(at, "From"))?,
        to: match el.child("To") {
            Some(to) => Some(read_organization(to, &join(at, "To"))?),
            None => None,
        },
        response_for: read_reference(required(el, at, "ResponseFor")?, &join(at, "ResponseFor"))?,
        code,
        description: optional_text(el, at, "Description", MAX_LONG_TEXT)?,
        timestamp_ms,
        staff,
    };
    status.validate().map_err(|e| match e {
        // validate() names paths under `Status`; say `MessageHeader` when that was read.
        EdxmlError::Missing { path } => EdxmlError::Missing {
            path: path.replacen("Status", at, 1),
        },
        EdxmlError::Invalid { path, reason } => EdxmlError::Invalid {
            path: path.replacen("Status", at, 1),
            reason,
        },
        other => other,
    })?;
    Ok(status)
}

#[derive(Serialize)]
struct RootOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "@xmlns:edXML")]
    xmlns_edxml: &'static str,
    #[serde(rename = "edXML:edXMLEnvelope")]
    envelope: EnvelopeOut<'a>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    #[serde(rename = "edXML:edXMLHeader")]
    header: HeaderOut<'a>,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    #[serde(rename = "edXML:Status")]
    status: StatusOut<'a>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    #[serde(rename = "edXML:ResponseFor")]
    response_for: ReferenceOut<'a>,
    #[serde(rename = "edXML:From")]
    from: OrganizationOut<'a>,
    #[serde(rename = "edXML:To", skip_serializing_if = "Option::is_none")]
    to: Option<OrganizationOut<'a>>,
    #[serde(rename = "edXML:StatusCode")]
    code: &'static str,
    #[serde(rename = "edXML:Description", skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "edXML:Timestamp")]
    timestamp: String,
    #[serde(rename = "edXML:StaffInfo", skip_serializing_if = "Option::is_none")]
    staff: Option<StaffOut<'a>>,
}

#[derive(Serialize)]
struct StaffOut<'a> {
    #[serde(rename = "edXML:Department", skip_serializing_if = "Option::is_none")]
    department: Option<&'a str>,
    #[serde(rename = "edXML:Staff", skip_serializing_if = "Option::is_none")]
    staff: Option<&'a str>,
    #[serde(rename = "edXML:Mobile", skip_serializing_if = "Option::is_none")]
    mobile: Option<&'a str>,
    #[serde(rename = "edXML:Email", skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
}

/// Writes a status message as edXML (`edXML/edXMLEnvelope/edXMLHeader/Status`, the form
/// the hub's SDK writes). Validates it first.
pub fn status_to_edxml(status: &StatusMessage) -> Result<Vec<u8>, EdxmlError> {
    status.validate()?;
    let root = RootOut {
        xmlns: EDXML_NAMESPACE,
        xmlns_edxml: EDXML_NAMESPACE,
        envelope: EnvelopeOut {
            header: HeaderOut {
                status: StatusOut {
                    response_for: (&status.response_for).into(),
                    from: (&status.from).into(),
                    to: status.to.as_ref().map(Into::into),
                    code: status.code.as_str(),
                    description: status.description.as_deref(),
                    timestamp: dates::format_timestamp(status.timestamp_ms),
                    staff: status
                        .staff
                        .as_ref()
                        .filter(|s| !s.is_empty())
                        .map(|s| StaffOut {
                            department: s.department.as_deref(),
                            staff: s.staff.as_deref(),
                            mobile: s.mobile.as_deref(),
                            email: s.email.as_deref(),
                        }),
                },
            },
        },
    };
    write_xml("edXML", &root)
}
