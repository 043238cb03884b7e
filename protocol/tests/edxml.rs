//! edXML (QCVN 102:2016): our fixtures in `tests/fixtures/edxml/` (a new document with two
//! attachments, revoke, update, replace, a status message per code), round trips in both
//! directions, hand-written malformed inputs that must fail with a precise error, and a
//! property test Document → edXML → Document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::document::{
    Attachment, BusinessType, Code, Document, DocumentHeader, MAX_ATTACHMENTS, Organization,
    Promulgation, Reference, Signer,
};
use lienthong_protocol::edxml::{
    EdxmlError, EdxmlMessage, MAX_EDXML_LEN, StaffInfo, StatusMessage, document_from_edxml,
    document_to_edxml, from_edxml, status_from_edxml, status_to_edxml,
};
use lienthong_protocol::status::StatusCode;
use proptest::prelude::*;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/edxml")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

fn id(s: &str) -> AgencyId {
    AgencyId::parse(s).unwrap()
}

fn new_document() -> Document {
    document_from_edxml(&fixture("new_two_attachments.edxml")).unwrap()
}

// ---- fixtures: documents ----

#[test]
fn new_document_with_two_attachments() {
    let doc = new_document();
    let h = &doc.header;
    assert_eq!(h.from.organ_id, id("000.00.00.G22"));
    assert_eq!(h.from.organ_name, "Văn phòng Chính phủ");
    assert_eq!(
        h.from.organ_address.as_deref(),
        Some("Số 1 Hoàng Hoa Thám, Ba Đình, Hà Nội")
    );
    assert_eq!(h.from.email.as_deref(), Some("vpcp@chinhphu.vn"));
    assert_eq!(h.from.telephone.as_deref(), Some("080 43162"));
    let to: Vec<_> = h.to.iter().map(|o| o.organ_id.as_str()).collect();
    assert_eq!(to, ["000.00.00.H41", "000.46.24.H44"]);
    assert_eq!(h.document_id, "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT");
    assert_eq!(h.code.number, "7816");
    assert_eq!(h.code.notation, "VPCP-TTĐT");
    assert_eq!(h.promulgation.place, "Hà Nội");
    assert_eq!(h.promulgation.date, "2026-11-20");
    assert_eq!(h.document_type, "2");
    assert_eq!(h.document_type_name.as_deref(), Some("Công văn"));
    // Whitespace around text is trimmed, entities and CDATA resolved.
    assert_eq!(
        h.subject,
        "V/v triển khai trục liên thông văn bản quốc gia & kết nối các bộ, ngành"
    );
    assert_eq!(
        h.content.as_deref(),
        Some("Đề nghị các cơ quan <kết nối> trước ngày 30/11.")
    );
    assert_eq!(h.signer.competence, "KT. BỘ TRƯỞNG, CHỦ NHIỆM");
    assert_eq!(h.signer.position, "Phó Chủ nhiệm");
    assert_eq!(h.signer.full_name, "Nguyễn Văn A");
    assert_eq!(h.due_date.as_deref(), Some("2026-11-30"));
    assert_eq!(h.to_places, ["Như trên", "Lưu: VT, TTĐT"]);
    assert_eq!(h.priority, 2);
    assert_eq!(
        h.sphere_of_promulgation.as_deref(),
        Some("Liên thông văn bản quốc gia")
    );
    assert_eq!(h.page_amount, Some(4));
    assert_eq!(h.steering_type, 1);
    assert_eq!(
        h.response_for,
        Some(Reference {
            document_id: "000.00.00.H41,2026/11/02,152/UBND-VX".into(),
            organ_id: id("000.00.00.H41"),
            code: Some("152/UBND-VX".into()),
            promulgation_date: Some("2026-11-02".into()),
        })
    );
    // A new document acts on nothing, even though this sender repeats its own id.
    assert_eq!(h.business, BusinessType::New);
    assert_eq!(h.business_ref, None);
    assert_eq!(h.business_reason, None);

    assert_eq!(doc.attachments.len(), 2);
    let pdf = &doc.attachments[0];
    assert_eq!(pdf.name, "7816-VPCP-TTDT.pdf");
    assert_eq!(pdf.mime, "application/pdf");
    assert_eq!(pdf.description.as_deref(), Some("Văn bản đã ký số"));
    assert_eq!(pdf.data, fixture("new_two_attachments.pdf.bin"));
    // The second attachment's metadata comes from the manifest, matched by ContentId.
    let docx = &doc.attachments[1];
    assert_eq!(docx.name, "Phu luc danh sach.docx");
    assert_eq!(
        docx.mime,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    );
    assert_eq!(docx.description.as_deref(), Some("Phụ lục"));
    assert_eq!(docx.data, fixture("new_two_attachments.docx.bin"));
    doc.validate().unwrap();
}

#[test]
fn revoke_business_type_1() {
    let doc = document_from_edxml(&fixture("revoke.edxml")).unwrap();
    let h = &doc.header;
    assert_eq!(h.business, BusinessType::Revoke);
    assert_eq!(
        h.business_reason.as_deref(),
        Some("Văn bản ban hành sai thẩm quyền")
    );
    assert_eq!(
        h.business_ref,
        Some(Reference {
            document_id: "000.00.00.H41,2026/11/02,152/UBND-VX".into(),
            organ_id: id("000.00.00.H41"),
            code: Some("152/UBND-VX".into()),
            promulgation_date: Some("2026-11-02".into()),
        })
    );
    // dd/MM/yyyy was read as a date.
    assert_eq!(h.promulgation.date, "2026-11-21");
    assert!(doc.attachments.is_empty());
}

#[test]
fn update_business_type_2() {
    let doc = document_from_edxml(&fixture("update.edxml")).unwrap();
    let h = &doc.header;
    assert_eq!(h.business, BusinessType::Update);
    assert_eq!(h.business_reason.as_deref(), Some("Cập nhật phụ lục"));
    let r = h.business_ref.as_ref().unwrap();
    assert_eq!(r.document_id, "000.00.24.H44,2026/11/10,40/QĐ-UBND");
    assert_eq!(r.organ_id, id("000.00.24.H44"));
    assert_eq!(r.promulgation_date.as_deref(), Some("2026-11-10"));
    assert_eq!(h.due_date.as_deref(), Some("2026-12-01"));
    assert_eq!(h.from.email.as_deref(), Some("ubnd@quangbinh.gov.vn"));
    assert_eq!(doc.attachments.len(), 1);
    assert_eq!(doc.attachments[0].name, "45-QD-UBND.pdf");
    assert_eq!(doc.attachments[0].mime, "application/pdf");
    assert!(doc.attachments[0].data.starts_with(b"%PDF-1.7\n% updated"));
}

#[test]
fn replace_business_type_3() {
    let doc = document_from_edxml(&fixture("replace.edxml")).unwrap();
    let h = &doc.header;
    assert_eq!(h.business, BusinessType::Replace);
    assert_eq!(h.business_reason.as_deref(), Some("Sai thời hạn kết nối"));
    let r = h.business_ref.as_ref().unwrap();
    assert_eq!(r.document_id, "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT");
    assert_eq!(r.organ_id, id("000.00.00.G22"));
    assert_eq!(r.code.as_deref(), Some("7816/VPCP-TTĐT"));
    // ResponseFor without DocumentId: derived from its OrganId, date and code.
    let rf = h.response_for.as_ref().unwrap();
    assert_eq!(rf.document_id, "000.00.00.H41,2026/11/02,152/UBND-VX");
    assert_eq!(h.to.len(), 2);
    assert_eq!(h.document_type_name, None);
}

#[test]
fn fixtures_round_trip_through_export() {
    for name in [
        "new_two_attachments.edxml",
        "revoke.edxml",
        "update.edxml",
        "replace.edxml",
    ] {
        let doc = document_from_edxml(&fixture(name)).unwrap();
        let xml = document_to_edxml(&doc).unwrap();
        let again = document_from_edxml(&xml).unwrap_or_else(|e| {
            panic!(
                "{name}: export does not read back: {e}\n{}",
                String::from_utf8_lossy(&xml)
            )
        });
        assert_eq!(again, doc, "{name}");
        // Writing is deterministic.
        assert_eq!(document_to_edxml(&again).unwrap(), xml, "{name}");
        assert!(matches!(from_edxml(&xml).unwrap(), EdxmlMessage::Document(d) if *d == doc));
    }
}

/// What another edXML consumer sees: the `edXML:`-prefixed form of the hub's SDK, with the
/// elements where QCVN 102 puts them, checked on the text itself.
#[test]
fn export_uses_the_hub_sdk_layout() {
    let doc = document_from_edxml(&fixture("replace.edxml")).unwrap();
    let xml = String::from_utf8(document_to_edxml(&doc).unwrap()).unwrap();
    for needle in [
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        "<edXML xmlns=\"http://www.mic.gov.vn/TBT/QCVN_102_2016\" xmlns:edXML=\"http://www.mic.gov.vn/TBT/QCVN_102_2016\">",
        "<edXML:edXMLEnvelope>",
        "<edXML:edXMLHeader>",
        "<edXML:MessageHeader>",
        "<edXML:OrganId>000.00.00.G22</edXML:OrganId>",
        "<edXML:PromulgationDate>2026/11/23</edXML:PromulgationDate>",
        "<edXML:TraceHeaderList>",
        "<edXML:Bussiness>",
        "<edXML:BussinessDocType>3</edXML:BussinessDocType>",
        "<edXML:ReplacementInfoList>",
        "<edXML:DocumentId>000.00.00.G22,2026/11/20,7816/VPCP-TTĐT</edXML:DocumentId>",
        "<edXML:edXMLManifest version=\"1.0\"",
    ] {
        assert!(xml.contains(needle), "missing {needle:?} in\n{xml}");
    }
    let with_files = String::from_utf8(document_to_edxml(&new_document()).unwrap()).unwrap();
    for needle in [
        "<edXML:ContentId>cid:attachment1@lienthong</edXML:ContentId>",
        "<AttachmentEncoded>",
        "<ContentId>attachment2@lienthong</ContentId>",
        "<ContentTransferEncoded>",
        "&amp; kết nối",
        "&lt;kết nối&gt;",
    ] {
        assert!(with_files.contains(needle), "missing {needle:?}");
    }
}

// ---- fixtures: statuses ----

#[test]
fn a_status_message_for_every_code() {
    for code in StatusCode::ALL {
        let name = format!("status_{code}.edxml");
        let status = status_from_edxml(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(status.code, code, "{name}");
        assert_eq!(
            status.response_for.document_id,
            "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT"
        );
        assert_eq!(status.response_for.organ_id, id("000.00.00.G22"));
        assert_eq!(status.response_for.code.as_deref(), Some("7816/VPCP-TTĐT"));
        assert_eq!(
            status.response_for.promulgation_date.as_deref(),
            Some("2026-11-20")
        );
        let expected_from = if code == StatusCode::RecallRequested {
            "000.00.00.G22"
        } else {
            "000.00.00.H41"
        };
        assert_eq!(status.from.organ_id, id(expected_from), "{name}");
        // Empty optional elements (<edXML:OrganAdd />) read as absent.
        assert_eq!(status.from.organ_address, None);
        assert!(status.description.is_some());
        if code.needs_detail() {
            assert!(status.detail().is_some(), "{name}");
        }
        let xml = status_to_edxml(&status).unwrap();
        assert_eq!(status_from_edxml(&xml).unwrap(), status, "{name}");
        assert!(matches!(from_edxml(&xml).unwrap(), EdxmlMessage::Status(s) if *s == status));
        assert!(matches!(
            from_edxml(&fixture(&name)).unwrap(),
            EdxmlMessage::Status(_)
        ));
    }
    let assigned = status_from_edxml(&fixture("status_04.edxml")).unwrap();
    assert_eq!(
        assigned.staff,
        Some(StaffInfo {
            department: Some("Phòng Tổng hợp".into()),
            staff: Some("Phạm Văn D".into()),
            mobile: Some("0912000004".into()),
            email: Some("pvd@nghean.gov.vn".into()),
        })
    );
    assert_eq!(assigned.detail(), Some("Phạm Văn D"));
    // 2026/11/21 04:04:00 in Vietnam is 2026-11-20T21:04:00Z.
    assert_eq!(assigned.timestamp_ms, 1_795_208_640_000);
    let rejected = status_from_edxml(&fixture("status_02.edxml")).unwrap();
    assert_eq!(
        rejected.detail(),
        Some("Từ chối tiếp nhận: văn bản gửi nhầm đơn vị")
    );
}

#[test]
fn status_built_for_a_document_round_trips() {
    let doc = new_document();
    let me = doc.header.to[0].clone();
    let status =
        StatusMessage::for_document(&doc.header, me, StatusCode::Assigned, 1_795_208_640_000)
            .with_staff(StaffInfo::person(
                "Phạm Văn D",
                Some("Phòng Tổng hợp".into()),
            ));
    assert_eq!(status.to.as_ref(), Some(&doc.header.from));
    assert_eq!(status.response_for.document_id, doc.header.document_id);
    let xml = status_to_edxml(&status).unwrap();
    let text = String::from_utf8(xml.clone()).unwrap();
    assert!(text.contains("<edXML:Status>"), "{text}");
    assert!(text.contains("<edXML:StatusCode>04</edXML:StatusCode>"));
    assert!(text.contains("<edXML:Timestamp>2026/11/21 04:04:00</edXML:Timestamp>"));
    assert_eq!(status_from_edxml(&xml).unwrap(), status);
}

#[test]
fn statuses_that_need_a_reason_or_assignee_refuse_without() {
    let doc = new_document();
    let me = doc.header.to[0].clone();
    for (code, path) in [
        (StatusCode::Rejected, "Status/Description"),
        (StatusCode::RecallRequested, "Status/Description"),
        (StatusCode::RecallRefused, "Status/Description"),
        (StatusCode::Assigned, "Status/StaffInfo/Staff"),
    ] {
        let status = StatusMessage::for_document(&doc.header, me.clone(), code, 0);
        assert_eq!(
            status_to_edxml(&status),
            Err(EdxmlError::Missing { path: path.into() }),
            "{code}"
        );
    }
    // In edXML form, the reason's absence is named too.
    let text = fixture_text("status_02.edxml").replace(
        "<edXML:Description>Từ chối tiếp nhận: văn bản gửi nhầm đơn vị</edXML:Description>",
        "",
    );
    assert_eq!(
        status_from_edxml(text.as_bytes()),
        Err(EdxmlError::Missing {
            path: "Status/Description".into()
        })
    );
}

#[test]
fn status_validation_keeps_export_readable() {
    let doc = new_document();
    let me = doc.header.to[0].clone();
    let ok = StatusMessage::for_document(&doc.header, me, StatusCode::Accepted, 0);
    let mut far = ok.clone();
    far.timestamp_ms = u64::MAX;
    assert_invalid(
        status_to_edxml(&far).unwrap_err(),
        "Status/Timestamp",
        "9999",
    );
    let mut not_iso = ok.clone();
    not_iso.response_for.promulgation_date = Some("20/11/2026".into());
    assert_invalid(
        status_to_edxml(&not_iso).unwrap_err(),
        "Status/ResponseFor/PromulgationDate",
        "YYYY-MM-DD",
    );
    let mut blank = ok;
    blank.from.organ_name = " ".into();
    assert_eq!(
        status_to_edxml(&blank),
        Err(EdxmlError::Missing {
            path: "Status/From/OrganName".into()
        })
    );
}

#[test]
fn status_errors_name_the_element() {
    let base = fixture_text("status_01.edxml");
    let cases = [
        (
            base.replace(">01<", ">07<"),
            "Status/StatusCode",
            "unknown status code",
        ),
        (
            base.replace("2026/11/21 01:01:00", "hôm qua"),
            "Status/Timestamp",
            "not a timestamp",
        ),
        (
            base.replace(
                "<edXML:OrganId>000.00.00.H41</edXML:OrganId>",
                "<edXML:OrganId>H41 Nghệ An</edXML:OrganId>",
            ),
            "Status/From/OrganId",
            "agency id",
        ),
    ];
    for (xml, path, reason) in cases {
        match status_from_edxml(xml.as_bytes()) {
            Err(EdxmlError::Invalid { path: p, reason: r }) => {
                assert_eq!(p, path);
                assert!(r.contains(reason), "{r}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
    let no_from = base
        .replace("<edXML:From>", "<edXML:Sender>")
        .replace("</edXML:From>", "</edXML:Sender>");
    assert_eq!(
        status_from_edxml(no_from.as_bytes()),
        Err(EdxmlError::Missing {
            path: "Status/From".into()
        })
    );
    // A document is not a status, and the other way round.
    assert!(matches!(
        status_from_edxml(&fixture("revoke.edxml")),
        Err(EdxmlError::Missing { path }) if path == "edXMLHeader/Status"
    ));
    assert!(matches!(
        document_from_edxml(&fixture("status_01.edxml")),
        Err(EdxmlError::Invalid { path, .. }) if path == "edXMLHeader"
    ));
}

// ---- hand-written malformed inputs ----

fn import_err(xml: &str) -> EdxmlError {
    document_from_edxml(xml.as_bytes()).expect_err("must be refused")
}

#[test]
fn broken_xml_is_malformed() {
    let base = fixture_text("revoke.edxml");
    for broken in [
        base.replace("</Subject>", "</Subjekt>"),
        base.replace("</edXMLEnvelope>", ""),
        base.replace("<Subject>", "<Subject"),
        base.replace("Nghệ An</Place>", "Nghệ &nbsp; An</Place>"),
        "".to_owned(),
        "not xml at all".to_owned(),
        format!("{base}<second/>"),
    ] {
        assert!(
            matches!(import_err(&broken), EdxmlError::Malformed { .. }),
            "{:?}",
            import_err(&broken)
        );
    }
    // Not UTF-8.
    let mut bytes = base.into_bytes();
    bytes.insert(200, 0xFF);
    assert!(matches!(
        document_from_edxml(&bytes),
        Err(EdxmlError::Malformed { .. })
    ));
}

#[test]
fn dtds_are_refused() {
    let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<edXMLEnvelope xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&lol2;</edXMLEnvelope>"#;
    match import_err(xml) {
        EdxmlError::Malformed { reason, .. } => assert!(reason.contains("DTD"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_from() {
    let base = fixture_text("revoke.edxml");
    let start = base.find("<From>").unwrap();
    let end = base.find("</From>").unwrap() + "</From>".len();
    let xml = format!("{}{}", &base[..start], &base[end..]);
    let err = import_err(&xml);
    assert_eq!(
        err,
        EdxmlError::Missing {
            path: "MessageHeader/From".into()
        }
    );
    assert_eq!(err.to_string(), "MessageHeader/From: missing");
    assert_eq!(err.path(), Some("MessageHeader/From"));
    assert_eq!(err.kind(), "missing");
}

#[test]
fn missing_or_empty_required_fields() {
    let base = fixture_text("new_two_attachments.edxml");
    let cases = [
        (
            base.replace("<edXML:OrganId>000.00.00.G22</edXML:OrganId>\n          <edXML:OrganizationInCharge>", "<edXML:OrganizationInCharge>"),
            "MessageHeader/From/OrganId",
        ),
        (
            base.replace("<edXML:OrganId>000.00.00.G22</edXML:OrganId>\n          <edXML:OrganizationInCharge>", "<edXML:OrganId>  </edXML:OrganId><edXML:OrganizationInCharge>"),
            "MessageHeader/From/OrganId",
        ),
        (
            base.replace("<edXML:CodeNumber>7816</edXML:CodeNumber>", ""),
            "MessageHeader/Code/CodeNumber",
        ),
        (
            base.replace("<edXML:FullName>Nguyễn Văn A</edXML:FullName>", "<edXML:FullName/>"),
            "MessageHeader/SignerInfo/FullName",
        ),
        (
            base.replace("<edXML:OrganName>Sở Thông tin và Truyền thông tỉnh Quảng Bình</edXML:OrganName>", ""),
            "MessageHeader/To[2]/OrganName",
        ),
        (
            base.replace("<AttachmentName>7816-VPCP-TTDT.pdf</AttachmentName>", "")
                .replace("<edXML:AttachmentName>7816-VPCP-TTDT.pdf</edXML:AttachmentName>", ""),
            "AttachmentEncoded/Attachment[1]/AttachmentName",
        ),
        (
            base.replace("<ContentId>4f1c2a10-0002@vpcp</ContentId>", "<ContentId>other</ContentId>"),
            "AttachmentEncoded/Attachment[2]/AttachmentName",
        ),
    ];
    for (xml, path) in cases {
        assert_eq!(
            import_err(&xml),
            EdxmlError::Missing { path: path.into() },
            "{path}"
        );
    }
    // Every recipient removed.
    let revoke = fixture_text("revoke.edxml");
    let start = revoke.find("<To>").unwrap();
    let end = revoke.find("</To>").unwrap() + "</To>".len();
    assert_eq!(
        import_err(&format!("{}{}", &revoke[..start], &revoke[end..])),
        EdxmlError::Missing {
            path: "MessageHeader/To".into()
        }
    );
    // A manifest entry without its attachment.
    let update = fixture_text("update.edxml");
    let start = update.find("<ns2:AttachmentEncoded>").unwrap();
    let end = update.find("</ns2:AttachmentEncoded>").unwrap() + "</ns2:AttachmentEncoded>".len();
    assert_eq!(
        import_err(&format!("{}{}", &update[..start], &update[end..])),
        EdxmlError::Missing {
            path: "AttachmentEncoded/Attachment[ContentId=upd-1]".into()
        }
    );
    // Business types 1-3 must name the document they act on.
    assert_eq!(
        import_err(&revoke.replace(
            "<DocumentId>000.00.00.H41,2026/11/02,152/UBND-VX</DocumentId>",
            ""
        )),
        EdxmlError::Missing {
            path: "TraceHeaderList/Bussiness/DocumentId".into()
        }
    );
}

fn assert_invalid(err: EdxmlError, path: &str, reason: &str) {
    match err {
        EdxmlError::Invalid { path: p, reason: r } => {
            assert_eq!(p, path);
            assert!(r.contains(reason), "{path}: {r:?} lacks {reason:?}");
        }
        other => panic!("{path}: expected Invalid, got {other:?}"),
    }
}

#[test]
fn bad_organ_id() {
    let base = fixture_text("revoke.edxml");
    let err = import_err(&base.replace(
        "<OrganId>000.00.00.H41</OrganId>\n        <OrganName>UBND",
        "<OrganId>UBND Nghệ An</OrganId>\n        <OrganName>UBND",
    ));
    assert_invalid(err.clone(), "MessageHeader/From/OrganId", "agency id");
    assert!(
        err.to_string()
            .starts_with("MessageHeader/From/OrganId: invalid value")
    );
    assert_invalid(
        import_err(&base.replace(
            "<OrganId>000.00.00.G22</OrganId>",
            "<OrganId>000.00.00.G22;DROP</OrganId>",
        )),
        "MessageHeader/To[1]/OrganId",
        "agency id",
    );
    assert_invalid(
        import_err(&base.replace(
            "<DocumentId>000.00.00.H41,2026/11/02,152/UBND-VX</DocumentId>",
            "<DocumentId>152/UBND-VX</DocumentId>",
        )),
        "TraceHeaderList/Bussiness/DocumentId",
        "not a DocumentId",
    );
}

#[test]
fn bad_dates_and_numbers() {
    let base = fixture_text("new_two_attachments.edxml");
    assert_invalid(
        import_err(&base.replace(
            "2026/11/20</edXML:PromulgationDate>",
            "2026/02/30</edXML:PromulgationDate>",
        )),
        "MessageHeader/PromulgationInfo/PromulgationDate",
        "not a date",
    );
    assert_invalid(
        import_err(&base.replace(
            "<edXML:DueDate>2026/11/30</edXML:DueDate>",
            "<edXML:DueDate>cuối tháng</edXML:DueDate>",
        )),
        "MessageHeader/DueDate",
        "not a date",
    );
    assert_invalid(
        import_err(&base.replace(
            "<edXML:Priority>2</edXML:Priority>",
            "<edXML:Priority>7</edXML:Priority>",
        )),
        "MessageHeader/OtherInfo/Priority",
        "priority",
    );
    assert_invalid(
        import_err(&base.replace(
            "<edXML:PageAmount>4</edXML:PageAmount>",
            "<edXML:PageAmount>-4</edXML:PageAmount>",
        )),
        "MessageHeader/OtherInfo/PageAmount",
        "not a number",
    );
}

#[test]
fn bad_base64() {
    let base = fixture_text("new_two_attachments.edxml");
    let start = base.find("<edXML:ContentTransferEncoded").unwrap();
    let open_end = base[start..].find('>').unwrap() + start + 1;
    let xml = format!("{}QUJD*RE==!{}", &base[..open_end], &base[open_end..]);
    assert_invalid(
        import_err(&xml),
        "AttachmentEncoded/Attachment[2]/ContentTransferEncoded",
        "not base64",
    );
    // An empty element is an empty file; no element is missing data.
    let start = base.find("<edXML:ContentTransferEncoded").unwrap();
    let end = base.find("</edXML:ContentTransferEncoded>").unwrap()
        + "</edXML:ContentTransferEncoded>".len();
    let empty = format!(
        "{}<ContentTransferEncoded>  </ContentTransferEncoded>{}",
        &base[..start],
        &base[end..]
    );
    assert!(
        document_from_edxml(empty.as_bytes()).unwrap().attachments[1]
            .data
            .is_empty()
    );
    let absent = format!("{}{}", &base[..start], &base[end..]);
    assert_eq!(
        import_err(&absent),
        EdxmlError::Missing {
            path: "AttachmentEncoded/Attachment[2]/ContentTransferEncoded".into()
        }
    );
}

#[test]
fn unknown_business_type() {
    let base = fixture_text("revoke.edxml");
    match import_err(&base.replace(
        "<BussinessDocType>1</BussinessDocType>",
        "<BussinessDocType>4</BussinessDocType>",
    )) {
        EdxmlError::UnknownBusinessType { path, value } => {
            assert_eq!(path, "TraceHeaderList/Bussiness/BussinessDocType");
            assert_eq!(value, "4");
        }
        other => panic!("{other:?}"),
    }
    // The corrected spelling is read too.
    let corrected = base
        .replace("Bussiness>", "Business>")
        .replace("BussinessDocType>", "BusinessDocType>")
        .replace("BussinessDocReason>", "BusinessDocReason>");
    let doc = document_from_edxml(corrected.as_bytes()).unwrap();
    assert_eq!(doc.header.business, BusinessType::Revoke);
    assert!(doc.header.business_reason.is_some());
}

#[test]
fn too_many_attachments() {
    let base = fixture_text("revoke.edxml");
    let one = "<Attachment><ContentId>x</ContentId><AttachmentName>a.pdf</AttachmentName>\
               <ContentType>application/pdf</ContentType>\
               <ContentTransferEncoded>QUJD</ContentTransferEncoded></Attachment>";
    let wrap = |n: usize| {
        base.replace(
            "</edXMLEnvelope>",
            &format!(
                "<AttachmentEncoded>{}</AttachmentEncoded></edXMLEnvelope>",
                one.repeat(n)
            ),
        )
    };
    let doc = document_from_edxml(wrap(MAX_ATTACHMENTS).as_bytes()).unwrap();
    assert_eq!(doc.attachments.len(), MAX_ATTACHMENTS);
    assert_eq!(doc.attachments[0].data, b"ABC");
    match import_err(&wrap(MAX_ATTACHMENTS + 1)) {
        EdxmlError::TooLarge {
            path,
            what,
            actual,
            limit,
        } => {
            assert_eq!(path, "AttachmentEncoded/Attachment");
            assert_eq!(what, "number of attachments");
            assert_eq!((actual, limit), (MAX_ATTACHMENTS + 1, MAX_ATTACHMENTS));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_namespace() {
    let base = fixture_text("revoke.edxml");
    let other = base.replace(
        "http://www.mic.gov.vn/TBT/QCVN_102_2016",
        "http://www.mic.gov.vn/TBT/QCVN_102_2011",
    );
    match import_err(&other) {
        EdxmlError::WrongNamespace { path, found } => {
            assert_eq!(path, "edXMLEnvelope");
            assert_eq!(found, "http://www.mic.gov.vn/TBT/QCVN_102_2011");
        }
        err => panic!("{err:?}"),
    }
    // No namespace at all.
    let none = base.replace(" xmlns=\"http://www.mic.gov.vn/TBT/QCVN_102_2016\"", "");
    assert!(matches!(
        import_err(&none),
        EdxmlError::WrongNamespace { path, found } if path == "edXMLEnvelope" && found == "no namespace"
    ));
    // A required element in another namespace is named as such, not as missing.
    let foreign_from = base
        .replace("<From>", "<x:From xmlns:x=\"urn:other\">")
        .replace("</From>", "</x:From>");
    assert!(matches!(
        import_err(&foreign_from),
        EdxmlError::WrongNamespace { path, found } if path == "MessageHeader/From" && found == "urn:other"
    ));
    // Not an edXML root at all.
    assert!(matches!(
        import_err("<html><body/></html>"),
        EdxmlError::WrongNamespace { path, .. } if path == "html"
    ));
    // An undeclared prefix is not namespace-well-formed.
    assert!(matches!(
        import_err(
            &base
                .replace("<Subject>", "<q:Subject>")
                .replace("</Subject>", "</q:Subject>")
        ),
        EdxmlError::Malformed { .. }
    ));
}

#[test]
fn oversize_inputs() {
    // The whole input, refused before parsing.
    let big = vec![b' '; MAX_EDXML_LEN + 1];
    assert!(matches!(
        document_from_edxml(&big),
        Err(EdxmlError::TooLarge { path, actual, limit, .. })
            if path == "(input)" && actual == MAX_EDXML_LEN + 1 && limit == MAX_EDXML_LEN
    ));
    // One field over its limit.
    let base = fixture_text("revoke.edxml");
    let long_name = "Ủ".repeat(300);
    match import_err(&base.replace("UBND tỉnh Nghệ An", &long_name)) {
        EdxmlError::TooLarge { path, limit, .. } => {
            assert_eq!(path, "MessageHeader/From/OrganName");
            assert_eq!(limit, 512);
        }
        other => panic!("{other:?}"),
    }
    // Nesting beyond the depth limit.
    let deep = format!("{}{}", "<a>".repeat(64), "</a>".repeat(64));
    assert!(matches!(
        import_err(
            &base
                .replace("<Content>", "")
                .replace("<Subject>", &format!("<Subject>{deep}"))
        ),
        EdxmlError::TooLarge { what: "element depth", path, .. }
            if path.starts_with("MessageHeader/Subject/a/a/")
    ));
    // Too many recipients.
    let to = "<To><OrganId>000.00.00.G22</OrganId><OrganName>VPCP</OrganName></To>";
    let many = base.replace("<Code>", &format!("{}<Code>", to.repeat(1024)));
    assert!(matches!(
        import_err(&many),
        EdxmlError::TooLarge { path, what: "number of recipients", actual: 1025, .. }
            if path == "MessageHeader/To"
    ));
}

#[test]
fn export_refuses_what_xml_cannot_carry() {
    let mut doc = new_document();
    doc.header.subject = "bell \u{7} here".into();
    assert_invalid(
        document_to_edxml(&doc).unwrap_err(),
        "MessageHeader/Subject",
        "control character",
    );
    let mut doc = new_document();
    doc.header.code.number = String::new();
    assert!(matches!(
        document_to_edxml(&doc),
        Err(EdxmlError::Export(_))
    ));
}

/// What the fuzz target checks: any accepted input exports and reads back unchanged (a
/// status to the second).
fn accepted_inputs_round_trip(input: &[u8]) {
    match from_edxml(input) {
        Ok(EdxmlMessage::Document(doc)) => {
            let xml = document_to_edxml(&doc).expect("an imported document exports");
            assert_eq!(document_from_edxml(&xml).unwrap(), *doc);
        }
        Ok(EdxmlMessage::Status(status)) => {
            let xml = status_to_edxml(&status).expect("an imported status exports");
            let mut expected = *status;
            expected.timestamp_ms -= expected.timestamp_ms % 1000;
            assert_eq!(status_from_edxml(&xml).unwrap(), expected);
        }
        Err(e) => {
            let _ = (e.to_string(), e.path());
        }
    }
}

#[test]
fn mutated_fixtures_never_panic_and_round_trip_when_accepted() {
    let inputs = [
        fixture("new_two_attachments.edxml"),
        fixture("update.edxml"),
        fixture("replace.edxml"),
        fixture("status_04.edxml"),
    ];
    for input in &inputs {
        for cut in (0..input.len()).step_by(53) {
            accepted_inputs_round_trip(&input[..cut]);
            let mut flipped = input.clone();
            flipped[cut] ^= 0x20;
            accepted_inputs_round_trip(&flipped);
            let mut inserted = input.clone();
            inserted.splice(cut..cut, b"&#13;&#x1;".iter().copied());
            accepted_inputs_round_trip(&inserted);
        }
    }
    // Character references, including a carriage return, survive a round trip.
    let text = fixture_text("revoke.edxml").replace(
        "<Subject>Thu hồi",
        "<Subject>&#x54;hu&#13;&#10;&#32;hồi&#13;x&#13;",
    );
    accepted_inputs_round_trip(text.as_bytes());
    let doc = document_from_edxml(text.as_bytes()).unwrap();
    assert!(
        doc.header.subject.starts_with("Thu\n\n hồi\nx\n"),
        "{:?}",
        doc.header.subject
    );
    // A control character by reference is refused like a literal one.
    let text = fixture_text("revoke.edxml").replace("<Subject>Thu hồi", "<Subject>&#1;Thu hồi");
    assert!(matches!(import_err(&text), EdxmlError::Malformed { .. }));
}

// ---- property: Document → edXML → Document ----

fn text(max: usize) -> impl Strategy<Value = String> {
    // Printable text including Vietnamese and XML-special characters, trimmed as edXML
    // reading trims it.
    proptest::string::string_regex(&format!(
        "[a-zA-Z0-9 ,./:;()&<>\"'àáảãạăằắẳẵặâầấẩẫậđèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵĐƯƠ-]{{1,{max}}}"
    ))
    .unwrap()
    .prop_map(|s| s.trim().to_owned())
    .prop_filter("non-empty after trimming", |s| !s.is_empty())
}

fn agency() -> impl Strategy<Value = AgencyId> {
    // A code is filled from the right: a lower level is set only under a set higher one.
    (
        1usize..5,
        1u16..1000,
        1u8..100,
        1u8..100,
        prop::sample::select(vec!['G', 'H', 'A']),
        0u8..100,
    )
        .prop_map(|(level, l4, l3, l2, letter, n)| {
            let l2 = if level >= 2 { l2 } else { 0 };
            let l3 = if level >= 3 { l3 } else { 0 };
            let l4 = if level >= 4 { l4 } else { 0 };
            AgencyId::parse(&format!("{l4:03}.{l3:02}.{l2:02}.{letter}{n:02}")).unwrap()
        })
}

fn organization() -> impl Strategy<Value = Organization> {
    (
        agency(),
        text(40),
        proptest::option::of(text(40)),
        proptest::option::of(text(20)),
    )
        .prop_map(
            |(organ_id, organ_name, organ_address, email)| Organization {
                organ_id,
                organ_name,
                organ_address,
                email,
                telephone: None,
            },
        )
}

fn date() -> impl Strategy<Value = String> {
    (2000u32..2100, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

fn reference() -> impl Strategy<Value = Reference> {
    (agency(), date(), text(20)).prop_map(|(organ_id, date, code)| Reference {
        document_id: format!("{organ_id},{},{code}", date.replace('-', "/")),
        organ_id,
        code: Some(code),
        promulgation_date: Some(date),
    })
}

fn attachment() -> impl Strategy<Value = Attachment> {
    (
        "[a-zA-Z0-9 ._-]{1,30}"
            .prop_map(|s| s.trim().to_owned())
            .prop_filter("name", |s| !s.is_empty()),
        prop::sample::select(vec!["application/pdf", "application/zip", "image/png"]),
        proptest::option::of(text(30)),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(name, mime, description, data)| Attachment {
            name,
            mime: mime.to_owned(),
            description,
            data,
        })
}

prop_compose! {
    fn document()(
        from in organization(),
        to in prop::collection::vec(organization(), 1..4),
        number in text(10),
        notation in text(20),
        place in text(20),
        promulgation in date(),
        document_type in "[0-9]{1,3}",
        subject in text(200),
        content in proptest::option::of(text(200)),
        signer in (text(20), text(20), text(20)),
        due_date in proptest::option::of(date()),
        to_places in prop::collection::vec(text(30), 0..3),
        priority in 0u8..5,
        page_amount in proptest::option::of(0u32..500),
        steering_type in 0u8..3,
        response_for in proptest::option::of(reference()),
        business in (0u8..4, reference(), proptest::option::of(text(60))),
        attachments in prop::collection::vec(attachment(), 0..3),
    ) -> Document {
        let (business_code, business_ref, business_reason) = business;
        let business = BusinessType::from_code(business_code).unwrap();
        let document_id = format!("{},{},{number}/{notation}", from.organ_id, promulgation.replace('-', "/"));
        Document {
            header: DocumentHeader {
                from,
                to,
                document_id,
                code: Code { number, notation },
                promulgation: Promulgation { place, date: promulgation },
                document_type,
                document_type_name: None,
                subject,
                content,
                signer: Signer { competence: signer.0, position: signer.1, full_name: signer.2 },
                due_date,
                to_places,
                priority,
                sphere_of_promulgation: None,
                page_amount,
                steering_type,
                response_for,
                business,
                business_ref: (business != BusinessType::New).then_some(business_ref),
                business_reason,
            },
            attachments,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn documents_round_trip_through_edxml(doc in document()) {
        prop_assume!(doc.validate().is_ok());
        let xml = document_to_edxml(&doc).unwrap();
        let back = document_from_edxml(&xml).unwrap();
        prop_assert_eq!(back, doc);
    }

    #[test]
    fn statuses_round_trip_through_edxml(
        from in organization(),
        response_for in reference(),
        code in prop::sample::select(StatusCode::ALL.to_vec()),
        description in text(100),
        seconds in 946_684_800u64..4_102_444_800,
        staff in proptest::option::of((text(30), text(30))),
    ) {
        let mut status = StatusMessage::new(from, response_for, code, seconds * 1000)
            .with_description(description);
        if let Some((department, person)) = staff {
            status = status.with_staff(StaffInfo::person(person, Some(department)));
        }
        let xml = status_to_edxml(&status).unwrap();
        prop_assert_eq!(status_from_edxml(&xml).unwrap(), status);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = from_edxml(&bytes);
    }
}

#[test]
fn a_four_mib_attachment_round_trips() {
    let mut doc = new_document();
    doc.attachments[0].data = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) % 251) as u8)
        .collect();
    let xml = document_to_edxml(&doc).unwrap();
    assert_eq!(document_from_edxml(&xml).unwrap(), doc);
}
