//! The hub-compatible listener, driven as the hub's SDK drives it (`HubClient` builds the
//! `XroadVnpt-*` headers, the signed-header JSON and its HMAC, and the SDK's body shapes):
//! a two-node federation where agency A's DMS sends through A's listener and agency B's
//! DMS lists, fetches, acknowledges and answers with statuses through B's; every refusal
//! with its own ErrorCode and nothing stored; revoke, update and replace by DocumentId;
//! the edXML fixtures of `tests/fixtures/hub`.
//!
//! Nothing sleeps to synchronise: every wait is for a condition re-checked until it holds,
//! under a timeout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::eventually;

use lienthong_node::federation::{LocalFederation, NodeSpec, free_loopback_port};
use lienthong_node::hub_compat::client::HubClient;
use lienthong_node::hub_compat::{self, HubConfig, HubServer, HubSystem};
use lienthong_node::node::Node;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::document::BusinessType;
use lienthong_protocol::edxml::{EdxmlMessage, document_from_edxml, from_edxml, status_from_edxml};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::status::StatusCode;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);
const A: &str = "000.00.00.G01";
const B: &str = "000.00.00.H41";
const NEW_ID: &str = "000.00.00.G01,2026/11/20,15/BNV-VP";
const SECRET_A: &str = "bí mật của văn thư A";
const SECRET_B: &str = "secret-of-B";

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hub")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A (ministry, G01) and B (province, H41), each on its own node.
struct Fed {
    fed: LocalFederation,
    dirs: Vec<TempDir>,
}

impl Fed {
    fn new(seed: u64) -> Self {
        common::trace_to_test_output();
        let specs: Vec<NodeSpec> = [("ministry", A), ("province", B)]
            .iter()
            .map(|(name, code)| NodeSpec {
                name: (*name).into(),
                central: false,
                tenants: vec![(agency(code), format!("Agency {code}"))],
                port: free_loopback_port(),
                http_port: None,
                host: std::net::Ipv4Addr::LOCALHOST,
            })
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let fed = LocalFederation::generate("test", &specs, 3, 2, &mut rng).unwrap();
        let dirs = specs.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        Self { fed, dirs }
    }

    async fn start(&self, index: usize) -> Node {
        let setup = self.fed.setup(index, self.dirs[index].path()).unwrap();
        let node = Node::start(setup).await.unwrap();
        node.listen_addrs().await;
        node
    }
}

/// The listener of `node` for one system acting for `tenant`.
async fn listener(
    node: &Node,
    systemid: &str,
    secret: &str,
    tenant: &str,
) -> (HubServer, HubClient) {
    let config = HubConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![HubSystem::new(
            systemid.into(),
            zeroize::Zeroizing::new(secret.into()),
            vec![agency(tenant)],
        )],
    );
    let server = hub_compat::serve(node, config).await.unwrap();
    let client = HubClient::new(&format!("http://{}/", server.addr()), systemid, secret).unwrap();
    (server, client)
}

fn assert_ok(answer: &Value) {
    assert_eq!(answer["status"], "OK", "{answer}");
    assert_eq!(answer["ErrorCode"], "0", "{answer}");
}

fn assert_fail(answer: &Value, code: &str) {
    assert_eq!(answer["status"], "FAIL", "{answer}");
    assert_eq!(answer["ErrorCode"], code, "{answer}");
    assert!(
        !answer["ErrorDesc"].as_str().unwrap().is_empty(),
        "{answer}"
    );
}

async fn list(client: &HubClient, messagetype: &str) -> Vec<Value> {
    let answer = client
        .call("getReceivedEdocList", &[("messagetype", messagetype)])
        .await
        .unwrap();
    assert_ok(&answer);
    answer["data"].as_array().unwrap().clone()
}

async fn get_edoc(client: &HubClient, doc_id: &str) -> Vec<u8> {
    let answer = client.call("getEdoc", &[("docId", doc_id)]).await.unwrap();
    assert_ok(&answer);
    base64::engine::general_purpose::STANDARD
        .decode(answer["data"].as_str().unwrap())
        .unwrap()
}

async fn send(client: &HubClient, from: &str, messagetype: &str, file: &str) -> String {
    let answer = client
        .send_edoc(from, messagetype, &fixture(file))
        .await
        .unwrap();
    assert_ok(&answer);
    answer["DocId"].as_str().unwrap().to_owned()
}

/// Rows the listener or the API wrote: envelopes, idempotency records and hub state.
fn stored(node: &Node) -> usize {
    let envelopes = node.store().scan(Column::Envelopes).unwrap().len();
    let meta = node
        .store()
        .scan(Column::Meta)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k.starts_with(b"hub/") || k.starts_with(b"api/"))
        .count();
    envelopes + meta
}

/// Envelopes `sender` signed, and the listener's and API's rows (the recipient's 01 may
/// arrive at any time: not counted).
fn stored_by(node: &Node, sender: &str) -> usize {
    let own = node
        .store()
        .scan(Column::Envelopes)
        .unwrap()
        .into_iter()
        .filter(|(_, v)| {
            lienthong_protocol::envelope::SignedEnvelope::decode(v)
                .unwrap()
                .body()
                .from
                == agency(sender)
        })
        .count();
    let all = node.store().scan(Column::Envelopes).unwrap().len();
    stored(node) - all + own
}

/// Waits until `client` lists statuses with these codes (in any order), acknowledging
/// none; returns their docIds by code.
async fn statuses_listed(client: &HubClient, codes: &[StatusCode]) -> Vec<(StatusCode, String)> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut seen = Vec::new();
        for item in list(client, "status").await {
            let id = item["docId"].as_str().unwrap().to_owned();
            let status = status_from_edxml(&get_edoc(client, &id).await).unwrap();
            seen.push((status.code, id));
        }
        if codes.iter().all(|c| seen.iter().any(|(code, _)| code == c)) {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for statuses {codes:?}; listed {seen:?}"
        );
        tokio::time::sleep(common::RECHECK).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_each_have_their_own_code_and_store_nothing() {
    let fed = Fed::new(11);
    let node = fed.start(0).await;
    let (server, dms) = listener(&node, "dms-a", SECRET_A, A).await;
    let before = stored(&node);
    let new = fixture("new_with_attachments.edxml");

    // The roster's agencies, and membership changes pointed at the ceremony.
    let agencies = dms.call("getAgenciesList", &[]).await.unwrap();
    assert_ok(&agencies);
    let data = agencies["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for item in data {
        for field in ["id", "pid", "code", "name", "mail"] {
            assert!(item.get(field).is_some(), "{item} lacks {field}");
        }
    }
    assert!(
        data.iter()
            .any(|a| a["code"] == B && a["name"] == format!("Agency {B}"))
    );
    for operation in ["registerAgency", "deleteAgency"] {
        let answer = dms
            .call(operation, &[("agency", "000.00.00.H99")])
            .await
            .unwrap();
        assert_fail(&answer, "410");
        assert!(answer["ErrorDesc"].as_str().unwrap().contains("roster"));
    }

    // Authentication.
    assert_fail(
        &dms.with_secret("not the secret")
            .send_edoc(A, "edoc", &new)
            .await
            .unwrap(),
        "202",
    );
    assert_fail(
        &dms.with_systemid("dms-x")
            .send_edoc(A, "edoc", &new)
            .await
            .unwrap(),
        "201",
    );
    let mut tampered = dms.headers(&[
        ("from", A),
        ("servicetype", "eDoc"),
        ("messagetype", "edoc"),
    ]);
    for (name, value) in &mut tampered {
        if name == "XroadVnpt-from" {
            *value = B.to_owned();
        }
    }
    let answer = dms
        .raw(
            Method::POST,
            "sendEdoc",
            &tampered,
            "application/octet-stream",
            new.clone(),
        )
        .await
        .unwrap();
    assert_eq!(answer.http_status, 200);
    assert_fail(&answer.json().unwrap(), "203");
    let unsigned = dms
        .raw(
            Method::POST,
            "getReceivedEdocList",
            &[dms.headers(&[]), vec![("XroadVnpt-from".into(), A.into())]].concat(),
            "application/json",
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    assert_fail(&unsigned.json().unwrap(), "203");
    let mut stale = dms.clone();
    stale.clock_ms = Some(1_000_000_000_000);
    assert_fail(&stale.call("countReceiveEdoc", &[]).await.unwrap(), "204");
    let unauthenticated = dms
        .raw(
            Method::POST,
            "getEdoc",
            &[],
            "application/json",
            b"{}".to_vec(),
        )
        .await
        .unwrap();
    assert_fail(&unauthenticated.json().unwrap(), "200");

    // The caller's agencies only.
    assert_fail(&dms.send_edoc(B, "edoc", &new).await.unwrap(), "205");
    let organ = |code: &str| format!("<edXML:OrganId>{code}</edXML:OrganId>");
    // The edXML's sender is B, not the system's A.
    let as_b = String::from_utf8(new.clone())
        .unwrap()
        .replacen(&organ(A), &organ(B), 1)
        .into_bytes();
    assert_fail(&dms.send_edoc(A, "edoc", &as_b).await.unwrap(), "205");

    // The body.
    assert_fail(
        &dms.send_edoc(A, "edoc", &fixture("malformed.edxml"))
            .await
            .unwrap(),
        "301",
    );
    let wrong_hash = dms.headers(&[
        ("from", A),
        ("servicetype", "eDoc"),
        ("messagetype", "edoc"),
        ("hash-file", &hub_compat::client::hash_file(b"another file")),
    ]);
    let answer = dms
        .raw(
            Method::POST,
            "sendEdoc",
            &wrong_hash,
            "application/octet-stream",
            new.clone(),
        )
        .await
        .unwrap();
    assert_fail(&answer.json().unwrap(), "302");
    assert_fail(&dms.send_edoc(A, "status", &new).await.unwrap(), "303");
    let to_self = String::from_utf8(new.clone())
        .unwrap()
        .replacen(&organ(B), &organ(A), 1)
        .into_bytes();
    assert_fail(&dms.send_edoc(A, "edoc", &to_self).await.unwrap(), "304");
    assert_fail(
        &dms.send_edoc(A, "edoc", &fixture("update.edxml"))
            .await
            .unwrap(),
        "306",
    );
    assert_fail(
        &dms.send_edoc(A, "status", &fixture("status_13.edxml"))
            .await
            .unwrap(),
        "404",
    );

    // Documents, operations and methods that do not exist.
    let unknown = lienthong_protocol::content_id::ContentId([7; 32]).to_string();
    assert_fail(
        &dms.call("getEdoc", &[("docId", &unknown)]).await.unwrap(),
        "404",
    );
    assert_fail(
        &dms.call("updateStatus", &[("docId", &unknown), ("status", "done")])
            .await
            .unwrap(),
        "404",
    );
    assert_fail(
        &dms.call("getEdoc", &[("docId", "not-an-id")])
            .await
            .unwrap(),
        "100",
    );
    assert_fail(&dms.call("frobnicate", &[]).await.unwrap(), "101");
    let get = dms
        .raw(
            Method::GET,
            "sendEdoc",
            &dms.headers(&[("from", A)]),
            "application/octet-stream",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_fail(&get.json().unwrap(), "102");

    assert_eq!(stored(&node), before, "a refused call stored something");
    server.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dms_sends_through_its_node_and_the_recipient_dms_answers_with_statuses() {
    let fed = Fed::new(12);
    let node_a = fed.start(0).await;
    let node_b = fed.start(1).await;
    let (server_a, dms_a) = listener(&node_a, "dms-a", SECRET_A, A).await;
    let (server_b, dms_b) = listener(&node_b, "dms-b", SECRET_B, B).await;

    // A's DMS sends; a retry answers the same DocId and stores nothing new.
    let doc_id = send(&dms_a, A, "edoc", "new_with_attachments.edxml").await;
    let stored_once = stored_by(&node_a, A);
    assert_eq!(
        send(&dms_a, A, "edoc", "new_with_attachments.edxml").await,
        doc_id
    );
    assert_eq!(stored_by(&node_a, A), stored_once);

    // B's DMS sees it, fetches it both ways, and it is the document A's DMS sent.
    eventually("B's DMS counts one document", WAIT, || async {
        let answer = dms_b.call("countReceiveEdoc", &[]).await.unwrap();
        answer["count"] == 1
    })
    .await;
    let items = list(&dms_b, "edoc").await;
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["docId"], doc_id.as_str());
    assert_eq!(item["serviceType"], "eDoc");
    assert_eq!(item["messageType"], "edoc");
    assert_eq!(item["from"], A);
    assert_eq!(item["to"], B);
    assert_eq!(item["status"], "initial");
    for field in ["created_time", "updated_time", "status_desc"] {
        assert!(item.get(field).is_some(), "{item} lacks {field}");
    }
    let via_get = get_edoc(&dms_b, &doc_id).await;
    let download = dms_b.download_edoc(&doc_id).await.unwrap();
    assert_eq!(download.http_status, 200);
    assert_eq!(download.body, via_get);
    let received = document_from_edxml(&via_get).unwrap();
    let sent = document_from_edxml(&fixture("new_with_attachments.edxml")).unwrap();
    assert_eq!(received, sent);
    assert_eq!(received.attachments.len(), 2);
    assert_eq!(
        received.attachments[0].data,
        fixture("new_attachment.pdf.bin")
    );
    assert_eq!(
        received.attachments[1].data,
        fixture("new_attachment.docx.bin")
    );

    // Acknowledged: processing keeps it listed, done removes it.
    let ack = |status: &'static str| {
        let (dms_b, doc_id) = (dms_b.clone(), doc_id.clone());
        async move {
            dms_b
                .call(
                    "updateStatus",
                    &[
                        ("docId", &doc_id),
                        ("status", status),
                        ("description", "đã nhận"),
                    ],
                )
                .await
                .unwrap()
        }
    };
    assert_ok(&ack("processing").await);
    let items = list(&dms_b, "edoc").await;
    assert_eq!(items[0]["status"], "processing");
    assert_eq!(items[0]["status_desc"], "đã nhận");
    assert_ok(&ack("done").await);
    assert!(list(&dms_b, "edoc").await.is_empty());
    assert_ok(&ack("done").await); // again: still OK
    assert_fail(
        &dms_b
            .call("updateStatus", &[("docId", &doc_id), ("status", "lost")])
            .await
            .unwrap(),
        "100",
    );

    // B's DMS answers 01 (the node sent it already: a no-op), 03, then A's DMS asks to
    // recall (13), B's refuses (16) and completes (06).
    send(&dms_b, B, "status", "status_01.edxml").await;
    let accepted = send(&dms_b, B, "status", "status_03.edxml").await;
    // A retry (the answer was lost) gets the same status, not a refusal.
    assert_eq!(send(&dms_b, B, "status", "status_03.edxml").await, accepted);
    send(&dms_a, A, "status", "status_13.edxml").await;
    let at_b = statuses_listed(&dms_b, &[StatusCode::RecallRequested]).await;
    let recall = status_from_edxml(&get_edoc(&dms_b, &at_b[0].1).await).unwrap();
    assert_eq!(recall.response_for.document_id, NEW_ID);
    assert_eq!(recall.from.organ_id, agency(A));
    assert!(recall.description.unwrap().contains("thu hồi"));
    send(&dms_b, B, "status", "status_16.edxml").await;
    send(&dms_b, B, "status", "status_06.edxml").await;

    // A's DMS sees 01, 03, 16 and 06 as status edXML about its document.
    let wanted = [
        StatusCode::Arrived,
        StatusCode::Accepted,
        StatusCode::RecallRefused,
        StatusCode::Completed,
    ];
    let at_a = statuses_listed(&dms_a, &wanted).await;
    for (code, id) in &at_a {
        let status = status_from_edxml(&get_edoc(&dms_a, id).await).unwrap();
        assert_eq!(status.code, *code);
        assert_eq!(status.response_for.document_id, NEW_ID);
        assert_eq!(status.from.organ_id, agency(B));
        if *code == StatusCode::RecallRefused {
            assert_eq!(
                status.description.as_deref(),
                Some("Văn bản đã được triển khai")
            );
        }
        assert_ok(
            &dms_a
                .call("updateStatus", &[("docid", id), ("status", "done")])
                .await
                .unwrap(),
        );
    }
    assert!(list(&dms_a, "status").await.is_empty());
    let count = dms_a.call("countReceiveStatus", &[]).await.unwrap();
    assert_eq!(count["count"], 0);

    // A's sent list: one row for B, delivered, completed.
    let sent = dms_a
        .call("getSentEdocList", &[("docId", &doc_id)])
        .await
        .unwrap();
    assert_ok(&sent);
    let rows = sent["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["senderDocId"], doc_id.as_str());
    assert_eq!(row["fromCode"], A);
    assert_eq!(row["toCode"], B);
    assert_eq!(row["notation"], "15/BNV-VP");
    assert_eq!(row["sendStatus"], "done");
    assert_eq!(row["receiveStatus"], "06");
    assert!(!row["receivedTime"].as_str().unwrap().is_empty());
    assert!(row["title"].as_str().unwrap().starts_with("V/v kết nối"));
    let all = dms_a.call("getSentEdocList", &[]).await.unwrap();
    assert_eq!(all["data"].as_array().unwrap().len(), 1);

    server_a.shutdown().await;
    server_b.shutdown().await;
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_update_and_replace_name_the_earlier_document_by_its_document_id() {
    let fed = Fed::new(13);
    let node_a = fed.start(0).await;
    let node_b = fed.start(1).await;
    let (server_a, dms_a) = listener(&node_a, "dms-a", SECRET_A, A).await;
    let (server_b, dms_b) = listener(&node_b, "dms-b", SECRET_B, B).await;

    let original = send(&dms_a, A, "edoc", "new_with_attachments.edxml").await;
    let mut sent = vec![(original.clone(), BusinessType::New)];
    for (file, business) in [
        ("update.edxml", BusinessType::Update),
        ("replace.edxml", BusinessType::Replace),
        ("revoke.edxml", BusinessType::Revoke),
    ] {
        sent.push((send(&dms_a, A, "edoc", file).await, business));
    }
    eventually("B's DMS lists the four documents", WAIT, || async {
        list(&dms_b, "edoc").await.len() == 4
    })
    .await;
    for (id, business) in &sent {
        let document = document_from_edxml(&get_edoc(&dms_b, id).await).unwrap();
        assert_eq!(document.header.business, *business);
        if *business != BusinessType::New {
            assert_eq!(document.header.business_ref.unwrap().document_id, NEW_ID);
        }
    }
    // The envelopes name the earlier one by content id too.
    let envelope = node_b
        .store()
        .get(
            Column::Envelopes,
            lienthong_protocol::content_id::ContentId::parse(&sent[3].0)
                .unwrap()
                .as_bytes(),
        )
        .unwrap()
        .unwrap();
    let envelope = lienthong_protocol::envelope::SignedEnvelope::decode(&envelope).unwrap();
    assert_eq!(
        envelope.body().routing.refers_to.unwrap().to_string(),
        original
    );

    server_a.shutdown().await;
    server_b.shutdown().await;
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[test]
fn fixtures_parse_as_what_they_are() {
    let document = document_from_edxml(&fixture("new_with_attachments.edxml")).unwrap();
    assert_eq!(document.header.document_id, NEW_ID);
    assert_eq!(document.attachments.len(), 2);
    for (file, business) in [
        ("update.edxml", BusinessType::Update),
        ("replace.edxml", BusinessType::Replace),
        ("revoke.edxml", BusinessType::Revoke),
    ] {
        let document = document_from_edxml(&fixture(file)).unwrap();
        assert_eq!(document.header.business, business, "{file}");
        assert_eq!(
            document.header.business_ref.unwrap().document_id,
            NEW_ID,
            "{file}"
        );
    }
    for code in ["01", "02", "03", "04", "05", "06", "13", "15", "16"] {
        let file = format!("status_{code}.edxml");
        let EdxmlMessage::Status(status) = from_edxml(&fixture(&file)).unwrap() else {
            panic!("{file} is not a status");
        };
        assert_eq!(status.code.as_str(), code);
        assert_eq!(status.response_for.document_id, NEW_ID);
        status.validate().unwrap();
    }
    assert!(from_edxml(&fixture("malformed.edxml")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_transmissions_and_acknowledgements_survive_restarts() {
    let fed = Fed::new(14);
    let node_a = fed.start(0).await;
    let node_b = fed.start(1).await;
    let (server_a, dms_a) = listener(&node_a, "dms-a", SECRET_A, A).await;
    let (server_b, dms_b) = listener(&node_b, "dms-b", SECRET_B, B).await;
    let doc_id = send(&dms_a, A, "edoc", "new_with_attachments.edxml").await;
    eventually("B's DMS lists the document", WAIT, || async {
        list(&dms_b, "edoc").await.len() == 1
    })
    .await;
    assert_ok(
        &dms_b
            .call(
                "updateStatus",
                &[("docId", &doc_id), ("status", "processing")],
            )
            .await
            .unwrap(),
    );
    server_b.shutdown().await;
    node_b.shutdown().await;

    // Still listed, with its acknowledgement, after a restart.
    let node_b = fed.start(1).await;
    let (server_b, dms_b) = listener(&node_b, "dms-b", SECRET_B, B).await;
    let items = list(&dms_b, "edoc").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "processing");
    assert_ok(
        &dms_b
            .call("updateStatus", &[("docId", &doc_id), ("status", "done")])
            .await
            .unwrap(),
    );
    server_b.shutdown().await;
    node_b.shutdown().await;

    // Done stays done; the document is still there to fetch.
    let node_b = fed.start(1).await;
    let (server_b, dms_b) = listener(&node_b, "dms-b", SECRET_B, B).await;
    assert!(list(&dms_b, "edoc").await.is_empty());
    let document = document_from_edxml(&get_edoc(&dms_b, &doc_id).await).unwrap();
    assert_eq!(document.header.document_id, NEW_ID);

    // A's DMS, restarted too, still answers a retry with the first DocId and lists the
    // document as sent.
    server_a.shutdown().await;
    node_a.shutdown().await;
    let node_a = fed.start(0).await;
    let (server_a, dms_a) = listener(&node_a, "dms-a", SECRET_A, A).await;
    assert_eq!(
        send(&dms_a, A, "edoc", "new_with_attachments.edxml").await,
        doc_id
    );
    let sent = dms_a.call("getSentEdocList", &[]).await.unwrap();
    assert_eq!(sent["data"].as_array().unwrap().len(), 1);

    server_a.shutdown().await;
    server_b.shutdown().await;
    node_a.shutdown().await;
    node_b.shutdown().await;
}
