//! Documents: `edXMLEnvelope` (MessageHeader, TraceHeaderList/Bussiness, edXMLBody
//! manifest, AttachmentEncoded) to and from [`Document`].

use std::borrow::Cow;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde::Serialize;

use super::tree::{self, Element};
use super::{
    EDXML_NAMESPACE, EdxmlError, OrganizationOut, dates, envelope_header, invalid, join,
    missing_or_foreign, optional_date, optional_number, optional_text, parse_agency,
    read_organization, required, required_text, status, write_xml, xml_safe,
};
use crate::document::{
    Attachment, BusinessType, Code, Document, DocumentHeader, MAX_ATTACHMENTS, MAX_DOCUMENT_LEN,
    MAX_HEADER_RECIPIENTS, MAX_LONG_TEXT, MAX_SHORT_TEXT, Promulgation, Reference, Signer,
};

const MESSAGE_HEADER: &str = "MessageHeader";
/// Longest MIME type, as [`Document::validate`] allows.
const MAX_MIME_LEN: usize = 128;
/// Longest document type code, as [`Document::validate`] allows.
const MAX_TYPE_LEN: usize = 64;

/// Base64 as senders write it: standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads an edXML document envelope.
pub fn document_from_edxml(xml: &[u8]) -> Result<Document, EdxmlError> {
    let root = tree::parse(xml)?;
    let (envelope, header) = envelope_header(&root)?;
    if status::status_element(header).is_some() {
        return Err(invalid(
            "edXMLHeader",
            "this is a status message (edXMLHeader/Status), not a document",
        ));
    }
    read_document(&root, envelope, header)
}

pub(super) fn read_document(
    root: &Element,
    envelope: &Element,
    header: &Element,
) -> Result<Document, EdxmlError> {
    let mut doc_header = read_message_header(required(header, "", MESSAGE_HEADER)?)?;
    read_business(header, &mut doc_header)?;
    let attachments = read_attachments(root, envelope)?;
    let doc = Document {
        header: doc_header,
        attachments,
    };
    // The reads above enforce what Document::validate does, with element paths; this is
    // the backstop for anything they missed.
    doc.validate().map_err(|e| match e {
        crate::document::DocumentError::Field { field, problem } => invalid(field, problem),
        other => invalid("(document)", other.to_string()),
    })?;
    Ok(doc)
}

fn read_message_header(mh: &Element) -> Result<DocumentHeader, EdxmlError> {
    const MH: &str = MESSAGE_HEADER;
    let from = read_organization(required(mh, MH, "From")?, "MessageHeader/From")?;

    let to_elements: Vec<&Element> = mh.children_named("To").collect();
    if to_elements.is_empty() {
        return Err(missing_or_foreign(mh, MH, "To"));
    }
    if to_elements.len() > MAX_HEADER_RECIPIENTS {
        return Err(EdxmlError::TooLarge {
            path: "MessageHeader/To".into(),
            what: "number of recipients",
            actual: to_elements.len(),
            limit: MAX_HEADER_RECIPIENTS,
        });
    }
    let to = to_elements
        .iter()
        .enumerate()
        .map(|(i, el)| read_organization(el, &format!("MessageHeader/To[{}]", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;

    let code_el = required(mh, MH, "Code")?;
    let code = Code {
        number: required_text(code_el, "MessageHeader/Code", "CodeNumber", MAX_SHORT_TEXT)?,
        notation: required_text(
            code_el,
            "MessageHeader/Code",
            "CodeNotation",
            MAX_SHORT_TEXT,
        )?,
    };

    const PI: &str = "MessageHeader/PromulgationInfo";
    let pi = required(mh, MH, "PromulgationInfo")?;
    let place = required_text(pi, PI, "Place", MAX_SHORT_TEXT)?;
    let date_text = required_text(pi, PI, "PromulgationDate", MAX_SHORT_TEXT)?;
    let date = dates::parse_date(&date_text).ok_or_else(|| {
        invalid(
            join(PI, "PromulgationDate"),
            format!("{date_text:?} is not a date (yyyy/MM/dd)"),
        )
    })?;

    const DT: &str = "MessageHeader/DocumentType";
    let dt = required(mh, MH, "DocumentType")?;
    let document_type = required_text(dt, DT, "Type", MAX_TYPE_LEN)?;
    let document_type_name = optional_text(dt, DT, "TypeName", MAX_SHORT_TEXT)?;

    const SI: &str = "MessageHeader/SignerInfo";
    let si = required(mh, MH, "SignerInfo")?;
    let signer = Signer {
        competence: required_text(si, SI, "Competence", MAX_SHORT_TEXT)?,
        position: required_text(si, SI, "Position", MAX_SHORT_TEXT)?,
        full_name: required_text(si, SI, "FullName", MAX_SHORT_TEXT)?,
    };

    let mut to_places = Vec::new();
    if let Some(tp) = mh.child("ToPlaces") {
        for (i, place_el) in tp.children_named("Place").enumerate() {
            let path = format!("MessageHeader/ToPlaces/Place[{}]", i + 1);
            if i >= MAX_HEADER_RECIPIENTS {
                return Err(EdxmlError::TooLarge {
                    path,
                    what: "number of places",
                    actual: tp.children_named("Place").count(),
                    limit: MAX_HEADER_RECIPIENTS,
                });
            }
            let text = place_el.trimmed_text();
            if !text.is_empty() {
                super::check_len(&path, text, MAX_SHORT_TEXT)?;
                to_places.push(text.to_owned());
            }
        }
    }

    const OI: &str = "MessageHeader/OtherInfo";
    let (priority, sphere_of_promulgation, page_amount) = match mh.child("OtherInfo") {
        Some(oi) => {
            let priority: u8 = optional_number(oi, OI, "Priority")?.unwrap_or(0);
            if priority > 4 {
                return Err(invalid(
                    join(OI, "Priority"),
                    format!("{priority} is not a priority 0-4"),
                ));
            }
            (
                priority,
                optional_text(oi, OI, "SphereOfPromulgation", MAX_SHORT_TEXT)?,
                optional_number(oi, OI, "PageAmount")?,
            )
        }
        None => (0, None, None),
    };

    let response_for = match mh.child("ResponseFor") {
        Some(rf) => Some(read_reference(rf, "MessageHeader/ResponseFor")?),
        None => None,
    };

    let document_id = match optional_text(mh, MH, "DocumentId", MAX_SHORT_TEXT)? {
        Some(id) => id,
        // Older senders leave it out; QCVN 102 defines it from these fields.
        None => format!(
            "{},{},{}/{}",
            from.organ_id,
            date.edxml(),
            code.number,
            code.notation
        ),
    };

    Ok(DocumentHeader {
        from,
        to,
        document_id,
        code,
        promulgation: Promulgation {
            place,
            date: date.iso(),
        },
        document_type,
        document_type_name,
        subject: required_text(mh, MH, "Subject", MAX_LONG_TEXT)?,
        content: optional_text(mh, MH, "Content", MAX_LONG_TEXT)?,
        signer,
        due_date: optional_date(mh, MH, "DueDate")?,
        to_places,
        priority,
        sphere_of_promulgation,
        page_amount,
        steering_type: optional_number(mh, MH, "SteeringType")?.unwrap_or(0),
        response_for,
        business: BusinessType::New,
        business_ref: None,
        business_reason: None,
    })
}

/// Splits a DocumentId `OrganId,yyyy/MM/dd,Number/Notation` into its agency, date
/// (`YYYY-MM-DD`) and code.
fn parse_document_id(
    path: &str,
    id: &str,
) -> Result<(crate::agency::AgencyId, String, String), EdxmlError> {
    let mut parts = id.splitn(3, ',').map(str::trim);
    let shape = || {
        invalid(
            path,
            format!("{id:?} is not a DocumentId `OrganId,yyyy/MM/dd,Number/Notation`"),
        )
    };
    let (organ, date, code) = (
        parts.next().ok_or_else(shape)?,
        parts.next().ok_or_else(shape)?,
        parts.next().ok_or_else(shape)?,
    );
    let organ = parse_agency(path, organ)?;
    let date = dates::parse_date(date).ok_or_else(shape)?;
    if code.is_empty() {
        return Err(shape());
    }
    Ok((organ, date.iso(), code.to_owned()))
}

/// `ResponseFor`: OrganId, Code, PromulgationDate, DocumentId, any of which may be derived
/// from the others.
pub(super) fn read_reference(el: &Element, path: &str) -> Result<Reference, EdxmlError> {
    let organ_id = match optional_text(el, path, "OrganId", MAX_SHORT_TEXT)? {
        Some(text) => Some(parse_agency(&join(path, "OrganId"), &text)?),
        None => None,
    };
    let code = optional_text(el, path, "Code", MAX_SHORT_TEXT)?;
    let promulgation_date = optional_date(el, path, "PromulgationDate")?;
    let document_id = optional_text(el, path, "DocumentId", MAX_SHORT_TEXT)?;
    match (document_id, organ_id) {
        (Some(document_id), Some(organ_id)) => Ok(Reference {
            document_id,
            organ_id,
            code,
            promulgation_date,
        }),
        (Some(document_id), None) => {
            let (organ_id, date, id_code) =
                parse_document_id(&join(path, "DocumentId"), &document_id)?;
            Ok(Reference {
                document_id,
                organ_id,
                code: code.or(Some(id_code)),
                promulgation_date: promulgation_date.or(Some(date)),
            })
        }
        (None, Some(organ_id)) => {
            let (Some(code), Some(date)) = (code, promulgation_date) else {
                return Err(EdxmlError::Missing {
                    path: join(path, "DocumentId"),
                });
            };
            let edxml_date = date.replace('-', "/");
            Ok(Reference {
                document_id: format!("{organ_id},{edxml_date},{code}"),
                organ_id,
                code: Some(code),
                promulgation_date: Some(date),
            })
        }
        (None, None) => Err(EdxmlError::Missing {
            path: join(path, "DocumentId"),
        }),
    }
}

/// A child under either spelling (the standard's `Bussiness…` or the corrected `Business…`).
fn child_either<'a>(el: &'a Element, standard: &str, corrected: &str) -> Option<&'a Element> {
    el.child(standard).or_else(|| el.child(corrected))
}

/// `TraceHeaderList/Bussiness`: the business type, its reason and, for 1–3, the document
/// it acts on.
fn read_business(header: &Element, doc: &mut DocumentHeader) -> Result<(), EdxmlError> {
    let Some(business) = header
        .child("TraceHeaderList")
        .and_then(|t| child_either(t, "Bussiness", "Business"))
    else {
        return Ok(());
    };
    let path = format!("TraceHeaderList/{}", business.name);
    let type_el = child_either(business, "BussinessDocType", "BusinessDocType");
    let type_text = type_el.map(Element::trimmed_text).unwrap_or("");
    let business_type = if type_text.is_empty() {
        BusinessType::New
    } else {
        type_text
            .parse::<u8>()
            .ok()
            .and_then(BusinessType::from_code)
            .ok_or_else(|| EdxmlError::UnknownBusinessType {
                path: join(
                    &path,
                    type_el.map_or("BussinessDocType", |e| e.name.as_str()),
                ),
                value: type_text.chars().take(32).collect(),
            })?
    };
    let reason_name = child_either(business, "BussinessDocReason", "BusinessDocReason")
        .map_or("BussinessDocReason", |e| e.name.as_str());
    doc.business = business_type;
    doc.business_reason = optional_text(business, &path, reason_name, MAX_LONG_TEXT)?;
    if business_type == BusinessType::New {
        // A new document acts on nothing (some senders repeat its own id here).
        return Ok(());
    }
    let replacement = business
        .child("ReplacementInfoList")
        .and_then(|l| l.child("ReplacementInfo"))
        .and_then(|r| r.child("DocumentId").map(|d| (r, d)))
        .filter(|(_, d)| !d.trimmed_text().is_empty());
    let (id_path, id_text) = match replacement {
        Some((_, d)) => (
            join(&path, "ReplacementInfoList/ReplacementInfo/DocumentId"),
            d.trimmed_text(),
        ),
        None => {
            let id_path = join(&path, "DocumentId");
            match business.child("DocumentId").map(Element::trimmed_text) {
                Some(text) if !text.is_empty() => (id_path, text),
                _ => return Err(EdxmlError::Missing { path: id_path }),
            }
        }
    };
    super::check_len(&id_path, id_text, MAX_SHORT_TEXT)?;
    let (organ_id, date, code) = parse_document_id(&id_path, id_text)?;
    doc.business_ref = Some(Reference {
        document_id: id_text.to_owned(),
        organ_id,
        code: Some(code),
        promulgation_date: Some(date),
    });
    Ok(())
}

/// What the manifest says about one attachment.
struct ManifestEntry<'a> {
    name: Option<&'a str>,
    mime: Option<&'a str>,
    description: Option<&'a str>,
    matched: bool,
}

fn bare_content_id(id: &str) -> &str {
    let id = id.trim();
    let id = id.strip_prefix("cid:").unwrap_or(id);
    id.strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id)
}

fn non_empty(el: Option<&Element>) -> Option<&str> {
    el.map(Element::trimmed_text).filter(|t| !t.is_empty())
}

fn read_attachments(root: &Element, envelope: &Element) -> Result<Vec<Attachment>, EdxmlError> {
    // The manifest (edXMLBody/edXMLManifest/Reference) may carry the metadata instead of
    // the attachment itself.
    let mut manifest: HashMap<&str, ManifestEntry<'_>> = HashMap::new();
    if let Some(m) = envelope
        .child("edXMLBody")
        .and_then(|b| b.child("edXMLManifest"))
    {
        for reference in m.children_named("Reference").take(MAX_ATTACHMENTS + 1) {
            if let Some(id) = non_empty(reference.child("ContentId")) {
                manifest.insert(
                    bare_content_id(id),
                    ManifestEntry {
                        name: non_empty(reference.child("AttachmentName")),
                        mime: non_empty(reference.child("ContentType")),
                        description: non_empty(reference.child("Description")),
                        matched: false,
                    },
                );
            }
        }
    }

    let containers = root.children_named("AttachmentEncoded").chain(
        if std::ptr::eq(root, envelope) {
            None
        } else {
            Some(envelope.children_named("AttachmentEncoded"))
        }
        .into_iter()
        .flatten(),
    );
    let mut attachments = Vec::new();
    let mut total = 0usize;
    for (i, el) in containers
        .flat_map(|c| c.children_named("Attachment"))
        .enumerate()
    {
        let path = format!("AttachmentEncoded/Attachment[{}]", i + 1);
        if i >= MAX_ATTACHMENTS {
            return Err(EdxmlError::TooLarge {
                path,
                what: "number of attachments",
                actual: i + 1,
                limit: MAX_ATTACHMENTS,
            });
        }
        let listed = non_empty(el.child("ContentId"))
            .and_then(|id| manifest.get_mut(bare_content_id(id)))
            .map(|entry| {
                entry.matched = true;
                (entry.name, entry.mime, entry.description)
            });
        let (listed_name, listed_mime, listed_description) = listed.unwrap_or((None, None, None));
        let name = match optional_text(el, &path, "AttachmentName", MAX_SHORT_TEXT)? {
            Some(n) => n,
            None => listed_name
                .map(str::to_owned)
                .ok_or_else(|| EdxmlError::Missing {
                    path: join(&path, "AttachmentName"),
                })?,
        };
        super::check_len(&join(&path, "AttachmentName"), &name, MAX_SHORT_TEXT)?;
        if name.contains(['/', '\\', '\0']) {
            return Err(invalid(
                join(&path, "AttachmentName"),
                format!("{name:?} must not contain / \\ or NUL"),
            ));
        }
        let mime = match optional_text(el, &path, "ContentType", MAX_MIME_LEN)? {
            Some(m) => m,
            None => listed_mime
                .map(str::to_owned)
                .ok_or_else(|| EdxmlError::Missing {
                    path: join(&path, "ContentType"),
                })?,
        };
        super::check_len(&join(&path, "ContentType"), &mime, MAX_MIME_LEN)?;
        let description = match optional_text(el, &path, "Description", MAX_SHORT_TEXT)? {
            Some(d) => Some(d),
            None => listed_description.map(str::to_owned),
        };
        if let Some(d) = &description {
            super::check_len(&join(&path, "Description"), d, MAX_SHORT_TEXT)?;
        }
        let data_path = join(&path, "ContentTransferEncoded");
        let encoded_el = required(el, &path, "ContentTransferEncoded")?;
        // Some writers put the encoding's name here and the data in a `Value` element.
        let encoded = match el.child("Value") {
            Some(v) if encoded_el.trimmed_text().eq_ignore_ascii_case("base64") => &v.text,
            _ => &encoded_el.text,
        };
        let data = decode_base64(&data_path, encoded, &mut total)?;
        attachments.push(Attachment {
            name,
            mime,
            description,
            data,
        });
    }
    if let Some(id) = manifest
        .iter()
        .filter(|(_, entry)| !entry.matched)
        .map(|(id, _)| *id)
        .min()
    {
        return Err(EdxmlError::Missing {
            path: format!("AttachmentEncoded/Attachment[ContentId={id}]"),
        });
    }
    Ok(attachments)
}

/// Decodes base64 with any whitespace in it, keeping the running total of attachment
/// bytes within [`MAX_DOCUMENT_LEN`] before allocating. An empty element is an empty file
/// (the element itself is required).
fn decode_base64(path: &str, encoded: &str, total: &mut usize) -> Result<Vec<u8>, EdxmlError> {
    let compact: Cow<'_, str> = if encoded.bytes().any(|b| b.is_ascii_whitespace()) {
        Cow::Owned(
            encoded
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect(),
        )
    } else {
        Cow::Borrowed(encoded)
    };
    let estimate = compact.len() / 4 * 3 + 3;
    let after = total.saturating_add(estimate);
    if after > MAX_DOCUMENT_LEN + 3 {
        return Err(EdxmlError::TooLarge {
            path: path.to_owned(),
            what: "total attachment size in bytes",
            actual: after,
            limit: MAX_DOCUMENT_LEN,
        });
    }
    let data = LENIENT_BASE64
        .decode(compact.as_bytes())
        .map_err(|e| invalid(path, format!("not base64: {e}")))?;
    *total = total.saturating_add(data.len());
    Ok(data)
}

// ---- export ----

#[derive(Serialize)]
struct RootOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "@xmlns:edXML")]
    xmlns_edxml: &'static str,
    #[serde(rename = "edXML:edXMLEnvelope")]
    envelope: EnvelopeOut<'a>,
    #[serde(rename = "AttachmentEncoded", skip_serializing_if = "Option::is_none")]
    attachments: Option<AttachmentEncodedOut<'a>>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    #[serde(rename = "edXML:edXMLHeader")]
    header: HeaderOut<'a>,
    #[serde(rename = "edXML:edXMLBody")]
    body: BodyOut<'a>,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    #[serde(rename = "edXML:MessageHeader")]
    message: MessageHeaderOut<'a>,
    #[serde(rename = "edXML:TraceHeaderList")]
    trace: TraceHeaderListOut<'a>,
}

#[derive(Serialize)]
struct MessageHeaderOut<'a> {
    #[serde(rename = "edXML:From")]
    from: OrganizationOut<'a>,
    #[serde(rename = "edXML:To")]
    to: Vec<OrganizationOut<'a>>,
    #[serde(rename = "edXML:Code")]
    code: CodeOut<'a>,
    #[serde(rename = "edXML:PromulgationInfo")]
    promulgation: PromulgationOut<'a>,
    #[serde(rename = "edXML:DocumentType")]
    document_type: DocumentTypeOut<'a>,
    #[serde(rename = "edXML:Subject")]
    subject: &'a str,
    #[serde(rename = "edXML:Content", skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(rename = "edXML:SignerInfo")]
    signer: SignerOut<'a>,
    #[serde(rename = "edXML:DueDate", skip_serializing_if = "Option::is_none")]
    due_date: Option<String>,
    #[serde(rename = "edXML:ToPlaces", skip_serializing_if = "Option::is_none")]
    to_places: Option<ToPlacesOut<'a>>,
    #[serde(rename = "edXML:OtherInfo")]
    other: OtherInfoOut<'a>,
    #[serde(rename = "edXML:ResponseFor", skip_serializing_if = "Option::is_none")]
    response_for: Option<ReferenceOut<'a>>,
    #[serde(rename = "edXML:SteeringType")]
    steering_type: u8,
    #[serde(rename = "edXML:DocumentId")]
    document_id: &'a str,
}

#[derive(Serialize)]
struct CodeOut<'a> {
    #[serde(rename = "edXML:CodeNumber")]
    number: &'a str,
    #[serde(rename = "edXML:CodeNotation")]
    notation: &'a str,
}

#[derive(Serialize)]
struct PromulgationOut<'a> {
    #[serde(rename = "edXML:Place")]
    place: &'a str,
    #[serde(rename = "edXML:PromulgationDate")]
    date: String,
}

#[derive(Serialize)]
struct DocumentTypeOut<'a> {
    #[serde(rename = "edXML:Type")]
    code: &'a str,
    #[serde(rename = "edXML:TypeName", skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct SignerOut<'a> {
    #[serde(rename = "edXML:Competence")]
    competence: &'a str,
    #[serde(rename = "edXML:Position")]
    position: &'a str,
    #[serde(rename = "edXML:FullName")]
    full_name: &'a str,
}

#[derive(Serialize)]
struct ToPlacesOut<'a> {
    #[serde(rename = "edXML:Place")]
    places: Vec<&'a str>,
}

#[derive(Serialize)]
struct OtherInfoOut<'a> {
    #[serde(rename = "edXML:Priority")]
    priority: u8,
    #[serde(
        rename = "edXML:SphereOfPromulgation",
        skip_serializing_if = "Option::is_none"
    )]
    sphere: Option<&'a str>,
    #[serde(rename = "edXML:PageAmount", skip_serializing_if = "Option::is_none")]
    page_amount: Option<u32>,
}

/// `ResponseFor` as written (also used by status messages).
#[derive(Serialize)]
pub(super) struct ReferenceOut<'a> {
    #[serde(rename = "edXML:OrganId")]
    organ_id: &'a str,
    #[serde(rename = "edXML:Code", skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(
        rename = "edXML:PromulgationDate",
        skip_serializing_if = "Option::is_none"
    )]
    date: Option<String>,
    #[serde(rename = "edXML:DocumentId")]
    document_id: &'a str,
}

impl<'a> From<&'a Reference> for ReferenceOut<'a> {
    fn from(r: &'a Reference) -> Self {
        Self {
            organ_id: r.organ_id.as_str(),
            code: r.code.as_deref(),
            date: r.promulgation_date.as_deref().map(edxml_date),
            document_id: &r.document_id,
        }
    }
}

#[derive(Serialize)]
struct TraceHeaderListOut<'a> {
    #[serde(rename = "edXML:Bussiness")]
    business: BusinessOut<'a>,
}

#[derive(Serialize)]
struct BusinessOut<'a> {
    #[serde(rename = "edXML:BussinessDocType")]
    doc_type: u8,
    #[serde(
        rename = "edXML:BussinessDocReason",
        skip_serializing_if = "Option::is_none"
    )]
    reason: Option<&'a str>,
    #[serde(rename = "edXML:DocumentId", skip_serializing_if = "Option::is_none")]
    document_id: Option<&'a str>,
    #[serde(
        rename = "edXML:BussinessDocumentInfo",
        skip_serializing_if = "Option::is_none"
    )]
    document_info: Option<BusinessDocumentInfoOut>,
    #[serde(
        rename = "edXML:ReplacementInfoList",
        skip_serializing_if = "Option::is_none"
    )]
    replacements: Option<ReplacementInfoListOut<'a>>,
    #[serde(rename = "edXML:Paper")]
    paper: u8,
}

#[derive(Serialize)]
struct BusinessDocumentInfoOut {
    /// 1: the document's information changed.
    #[serde(rename = "edXML:DocumentInfo")]
    document_info: u8,
    /// 0: the recipients did not change.
    #[serde(rename = "edXML:DocumentReceiver")]
    document_receiver: u8,
}

#[derive(Serialize)]
struct ReplacementInfoListOut<'a> {
    #[serde(rename = "edXML:ReplacementInfo")]
    info: ReplacementInfoOut<'a>,
}

#[derive(Serialize)]
struct ReplacementInfoOut<'a> {
    #[serde(rename = "edXML:DocumentId")]
    document_id: &'a str,
    #[serde(rename = "edXML:OrganIdList")]
    organs: OrganIdListOut<'a>,
}

#[derive(Serialize)]
struct OrganIdListOut<'a> {
    #[serde(rename = "edXML:OrganId")]
    organ_ids: Vec<&'a str>,
}

#[derive(Serialize)]
struct BodyOut<'a> {
    #[serde(rename = "edXML:edXMLManifest")]
    manifest: ManifestOut<'a>,
}

#[derive(Serialize)]
struct ManifestOut<'a> {
    #[serde(rename = "@version")]
    version: &'static str,
    #[serde(rename = "edXML:Reference")]
    references: Vec<ManifestReferenceOut<'a>>,
}

#[derive(Serialize)]
struct ManifestReferenceOut<'a> {
    #[serde(rename = "edXML:ContentId")]
    content_id: String,
    #[serde(rename = "edXML:ContentType")]
    mime: &'a str,
    #[serde(rename = "edXML:Description", skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "edXML:AttachmentName")]
    name: &'a str,
}

#[derive(Serialize)]
struct AttachmentEncodedOut<'a> {
    #[serde(rename = "Attachment")]
    attachments: Vec<AttachmentOut<'a>>,
}

#[derive(Serialize)]
struct AttachmentOut<'a> {
    #[serde(rename = "ContentId")]
    content_id: String,
    #[serde(rename = "AttachmentName")]
    name: &'a str,
    #[serde(rename = "ContentType")]
    mime: &'a str,
    #[serde(rename = "Description", skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "ContentTransferEncoded")]
    data: String,
}

/// `YYYY-MM-DD` (validated by [`Document::validate`]) as `YYYY/MM/DD`.
fn edxml_date(iso: &str) -> String {
    iso.replace('-', "/")
}

fn content_id(index: usize) -> String {
    format!("attachment{}@lienthong", index + 1)
}

/// Every text of the document with its element path, to refuse characters XML cannot carry.
fn check_xml_text(doc: &Document) -> Result<(), EdxmlError> {
    let h = &doc.header;
    let mut fields: Vec<(Cow<'static, str>, &str)> = vec![
        ("MessageHeader/DocumentId".into(), &h.document_id),
        ("MessageHeader/Code/CodeNumber".into(), &h.code.number),
        ("MessageHeader/Code/CodeNotation".into(), &h.code.notation),
        (
            "MessageHeader/PromulgationInfo/Place".into(),
            &h.promulgation.place,
        ),
        ("MessageHeader/DocumentType/Type".into(), &h.document_type),
        ("MessageHeader/Subject".into(), &h.subject),
        (
            "MessageHeader/SignerInfo/Competence".into(),
            &h.signer.competence,
        ),
        (
            "MessageHeader/SignerInfo/Position".into(),
            &h.signer.position,
        ),
        (
            "MessageHeader/SignerInfo/FullName".into(),
            &h.signer.full_name,
        ),
    ];
    let optional = [
        ("MessageHeader/DocumentType/TypeName", &h.document_type_name),
        ("MessageHeader/Content", &h.content),
        (
            "MessageHeader/OtherInfo/SphereOfPromulgation",
            &h.sphere_of_promulgation,
        ),
        (
            "TraceHeaderList/Bussiness/BussinessDocReason",
            &h.business_reason,
        ),
    ];
    for (path, value) in optional {
        if let Some(v) = value {
            fields.push((path.into(), v));
        }
    }
    for (i, org) in std::iter::once(&h.from).chain(&h.to).enumerate() {
        let at = if i == 0 {
            "MessageHeader/From".to_owned()
        } else {
            format!("MessageHeader/To[{i}]")
        };
        fields.push((format!("{at}/OrganName").into(), &org.organ_name));
        for (name, value) in [
            ("OrganAdd", &org.organ_address),
            ("Email", &org.email),
            ("Telephone", &org.telephone),
        ] {
            if let Some(v) = value {
                fields.push((format!("{at}/{name}").into(), v));
            }
        }
    }
    for (i, place) in h.to_places.iter().enumerate() {
        fields.push((
            format!("MessageHeader/ToPlaces/Place[{}]", i + 1).into(),
            place,
        ));
    }
    for (at, r) in [
        ("MessageHeader/ResponseFor", &h.response_for),
        ("TraceHeaderList/Bussiness", &h.business_ref),
    ] {
        if let Some(r) = r {
            fields.push((format!("{at}/DocumentId").into(), &r.document_id));
            if let Some(code) = &r.code {
                fields.push((format!("{at}/Code").into(), code));
            }
        }
    }
    for (i, a) in doc.attachments.iter().enumerate() {
        let at = format!("AttachmentEncoded/Attachment[{}]", i + 1);
        fields.push((format!("{at}/AttachmentName").into(), &a.name));
        fields.push((format!("{at}/ContentType").into(), &a.mime));
        if let Some(d) = &a.description {
            fields.push((format!("{at}/Description").into(), d));
        }
    }
    match fields.into_iter().find(|(_, v)| !xml_safe(v)) {
        Some((path, _)) => Err(invalid(
            path,
            "contains a character XML 1.0 cannot carry (a control character)",
        )),
        None => Ok(()),
    }
}

/// Writes a document as an edXML envelope (the `edXML:` prefixed form the hub's SDK
/// writes, attachments in base64 after the envelope).
///
/// The output reads back to the same document through [`document_from_edxml`], except
/// that text is trimmed and line ends normalised as XML requires.
pub fn document_to_edxml(doc: &Document) -> Result<Vec<u8>, EdxmlError> {
    doc.validate().map_err(EdxmlError::Export)?;
    check_xml_text(doc)?;
    let h = &doc.header;
    let business_ref = h
        .business_ref
        .as_ref()
        .filter(|_| h.business != BusinessType::New);
    let business = BusinessOut {
        doc_type: h.business.code(),
        reason: h.business_reason.as_deref(),
        document_id: business_ref.map(|r| r.document_id.as_str()),
        document_info: (h.business == BusinessType::Update).then_some(BusinessDocumentInfoOut {
            document_info: 1,
            document_receiver: 0,
        }),
        replacements: business_ref
            .filter(|_| h.business == BusinessType::Replace)
            .map(|r| ReplacementInfoListOut {
                info: ReplacementInfoOut {
                    document_id: &r.document_id,
                    organs: OrganIdListOut {
                        organ_ids: h.to.iter().map(|o| o.organ_id.as_str()).collect(),
                    },
                },
            }),
        paper: 0,
    };
    let message = MessageHeaderOut {
        from: (&h.from).into(),
        to: h.to.iter().map(Into::into).collect(),
        code: CodeOut {
            number: &h.code.number,
            notation: &h.code.notation,
        },
        promulgation: PromulgationOut {
            place: &h.promulgation.place,
            date: edxml_date(&h.promulgation.date),
        },
        document_type: DocumentTypeOut {
            code: &h.document_type,
            name: h.document_type_name.as_deref(),
        },
        subject: &h.subject,
        content: h.content.as_deref(),
        signer: SignerOut {
            competence: &h.signer.competence,
            position: &h.signer.position,
            full_name: &h.signer.full_name,
        },
        due_date: h.due_date.as_deref().map(edxml_date),
        to_places: (!h.to_places.is_empty()).then(|| ToPlacesOut {
            places: h.to_places.iter().map(String::as_str).collect(),
        }),
        other: OtherInfoOut {
            priority: h.priority,
            sphere: h.sphere_of_promulgation.as_deref(),
            page_amount: h.page_amount,
        },
        response_for: h.response_for.as_ref().map(Into::into),
        steering_type: h.steering_type,
        document_id: &h.document_id,
    };
    let references = doc
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| ManifestReferenceOut {
            content_id: format!("cid:{}", content_id(i)),
            mime: &a.mime,
            description: a.description.as_deref(),
            name: &a.name,
        })
        .collect();
    let attachments = (!doc.attachments.is_empty()).then(|| AttachmentEncodedOut {
        attachments: doc
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| AttachmentOut {
                content_id: content_id(i),
                name: &a.name,
                mime: &a.mime,
                description: a.description.as_deref(),
                data: STANDARD.encode(&a.data),
            })
            .collect(),
    });
    let root = RootOut {
        xmlns: EDXML_NAMESPACE,
        xmlns_edxml: EDXML_NAMESPACE,
        envelope: EnvelopeOut {
            header: HeaderOut {
                message,
                trace: TraceHeaderListOut { business },
            },
            body: BodyOut {
                manifest: ManifestOut {
                    version: "1.0",
                    references,
                },
            },
        },
        attachments,
    };
    write_xml("edXML", &root)
}
