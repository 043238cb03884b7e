//! The HTTP API, without a network (tower `oneshot` on the router) over a real driver and
//! RocksDB store: a federation where tenants A and B are co-hosted on one node, so a
//! document between them is delivered locally. Every endpoint, every error status, the
//! DMS flow (send, inbox, open, statuses, trace), and the OpenAPI document against the
//! routes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt as _;
use lienthong_node::api::{self, ApiConfig, ApiParts, ApiState, ApiTenant, TokenTable};
use lienthong_node::driver::{DriverConfig, DriverHandle};
use lienthong_node::send::SendPath;
use lienthong_node::store::Store;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::{RelayConfig, Tenant};
use lienthong_protocol::roster::{AgencyEntry, AgencyState, Federation, Roster};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::watch;
use tower::ServiceExt as _;

const WAIT: Duration = Duration::from_secs(20);
const A: &str = "000.00.00.H41";
const B: &str = "000.00.01.H41";
const C: &str = "000.00.00.H44";

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

fn seed(code: &str) -> [u8; 32] {
    match code {
        A => [1; 32],
        B => [2; 32],
        _ => [3; 32],
    }
}

/// A (000.00.00.H41) and B (000.00.01.H41) on node-a (this node); C on node-c.
fn roster() -> Arc<Roster> {
    let mut agencies: Vec<AgencyEntry> = [(A, "node-a"), (B, "node-a"), (C, "node-c")]
        .iter()
        .map(|(code, node)| {
            let id = agency(code);
            AgencyEntry {
                level: id.level().unwrap(),
                parent: id.parent(),
                id: id.clone(),
                name: format!("Agency {code}"),
                signing_key: SigningKey::from_seed(&seed(code)).verifying_key(),
                encryption_key: EncryptionSecret::from_bytes(&seed(code)).public_key(),
                node: (*node).into(),
                addrs: vec![],
                state: AgencyState::Active,
            }
        })
        .collect();
    agencies.sort_by(|x, y| x.id.cmp(&y.id));
    let roster = Roster {
        epoch: 1,
        issued_ms: 0,
        federation: Federation {
            name: "test".into(),
            threshold: 1,
            root_keys: vec![SigningKey::from_seed(&[99; 32]).verifying_key()],
            witness_quorum: 0,
        },
        agencies,
        central: vec![],
    };
    roster.validate().unwrap();
    Arc::new(roster)
}

struct Node {
    router: Router,
    driver: DriverHandle,
    store: Store,
    _dir: TempDir,
}

fn node_with(config: ApiConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let roster = roster();
    let tenants = [A, B]
        .iter()
        .map(|code| Tenant {
            id: agency(code),
            key: SigningKey::from_seed(&seed(code)),
        })
        .collect();
    let (driver, outbound) = DriverHandle::start(
        DriverConfig {
            relay: RelayConfig::new("node-a"),
            roster: Arc::clone(&roster),
            tenants,
        },
        store.clone(),
    )
    .unwrap();
    // Nothing listens to the network here: drain what the driver sends out.
    tokio::spawn(async move {
        let mut outbound = outbound;
        while outbound.recv().await.is_some() {}
    });
    let send = SendPath::new(driver.clone(), store.clone(), Arc::clone(&roster));
    let (_roster_tx, roster_rx) = watch::channel(roster);
    let tokens = TokenTable::new()
        .with(TokenTable::hash("token-a"), agency(A))
        .with(TokenTable::hash("token-b"), agency(B))
        .with(TokenTable::hash("token-ab"), agency(A))
        .with(TokenTable::hash("token-ab"), agency(B));
    let state = ApiState::new(ApiParts {
        driver: driver.clone(),
        send,
        store: store.clone(),
        roster: roster_rx,
        tenants: [A, B]
            .iter()
            .map(|code| ApiTenant {
                id: agency(code),
                encryption: EncryptionSecret::from_bytes(&seed(code)),
            })
            .collect(),
        tokens,
        config,
        peers: Some(Arc::new(|| 7)),
    });
    Node {
        router: api::router(state),
        driver,
        store,
        _dir: dir,
    }
}

fn node() -> Node {
    node_with(ApiConfig::default())
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an RFC 9457 problem of `status`, naming `field` if given; returns it.
    #[track_caller]
    fn problem(&self, status: StatusCode, field: Option<&str>) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json",
            "every error is a problem"
        );
        let p = self.json();
        assert_eq!(p["status"], status.as_u16());
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:lienthong:problem:")
        );
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
        if let Some(field) = field {
            assert_eq!(p["field"], field, "{p}");
        }
        p
    }
}

impl Node {
    async fn request(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap())),
            None => request.body(Body::empty()),
        };
        self.request(request.unwrap()).await
    }

    async fn get(&self, uri: &str, token: &str) -> Answer {
        self.call(Method::GET, uri, Some(token), None).await
    }

    async fn post(&self, uri: &str, token: &str, body: Value) -> Answer {
        self.call(Method::POST, uri, Some(token), Some(body)).await
    }

    /// Sends `document` as A; returns its content id.
    async fn send(&self, document: Value) -> String {
        let answer = self.post("/v1/documents", "token-a", document).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        answer.json()["id"].as_str().unwrap().to_owned()
    }

    /// Waits until `tenant`'s inbox (read with `token`) holds an entry for `id` of `kind`.
    async fn wait_inbox(&self, token: &str, tenant: &str, id: &str, kind: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let page = self
                    .get(&format!("/v1/inbox?tenant={tenant}&limit=1000"), token)
                    .await
                    .json();
                let found = page["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["kind"] == kind && (e["id"] == id || e["refers_to"] == id));
                if let Some(entry) = found {
                    return entry.clone();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {kind} for {id} in {tenant}'s inbox"))
    }

    /// Waits until A's trace of `id` shows B's chain with `codes`.
    async fn wait_trace(&self, id: &str, codes: &[&str]) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let trace = self
                    .get(&format!("/v1/documents/{id}/trace"), "token-a")
                    .await
                    .json();
                let seen: Vec<String> = trace["recipients"][0]["history"]
                    .as_array()
                    .map(|h| {
                        h.iter()
                            .map(|e| e["code"].as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                if seen == codes {
                    return trace;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("trace of {id} never showed {codes:?}"))
    }
}

fn document(subject: &str, document_id: &str) -> Value {
    json!({
        "header": {
            "from": {"organ_id": A, "organ_name": "Ủy ban nhân dân tỉnh"},
            "to": [{"organ_id": B, "organ_name": "Sở Nội vụ"}],
            "document_id": document_id,
            "code": {"number": "123", "notation": "QĐ-UBND"},
            "promulgation": {"place": "Hà Nội", "date": "2026-11-23"},
            "document_type": "1",
            "document_type_name": "Quyết định",
            "subject": subject,
            "signer": {"competence": "TM. UBND", "position": "Chủ tịch", "full_name": "Nguyễn Văn A"},
            "due_date": "2026-12-01",
            "priority": 2
        },
        "attachments": [{
            "name": "quyet-dinh 123.pdf",
            "content_type": "application/pdf",
            "description": "Bản ký số",
            "data": B64.encode(b"%PDF-1.7 signed bytes")
        }]
    })
}

fn unknown_id() -> String {
    lienthong_protocol::content_id::ContentId([7; 32]).to_string()
}

fn statuses(history: &Value) -> Vec<&str> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_flow_send_inbox_open_status_trace() {
    let node = node();
    let id = node
        .send(document("Về việc thử nghiệm", "H41,2026/11/23,123/QĐ-UBND"))
        .await;

    // B pulls its inbox and finds the document.
    let entry = node.wait_inbox("token-b", B, &id, "document").await;
    assert_eq!(entry["from"], A);
    assert_eq!(entry["doc_type"], "1");
    assert_eq!(entry["priority"], 2);
    assert_eq!(entry["due"], "2026-12-01");

    // B opens it, its header and its attachment.
    let doc = node.get(&format!("/v1/documents/{id}"), "token-b").await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert_eq!(doc["header"]["subject"], "Về việc thử nghiệm");
    assert_eq!(doc["kind"], "document");
    assert_eq!(doc["attachments"][0]["name"], "quyet-dinh 123.pdf");
    assert_eq!(doc["attachments"][0]["size"], 21);
    let head = node
        .get(&format!("/v1/documents/{id}/header"), "token-b")
        .await;
    assert_eq!(head.json()["document_id"], "H41,2026/11/23,123/QĐ-UBND");
    let file = node
        .get(&format!("/v1/documents/{id}/attachments/0"), "token-b")
        .await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.headers[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(file.headers[header::CONTENT_LENGTH], "21");
    assert_eq!(
        file.headers[header::CONTENT_DISPOSITION],
        "attachment; filename*=UTF-8''quyet-dinh%20123.pdf"
    );
    assert_eq!(&file.body[..], b"%PDF-1.7 signed bytes");

    // B accepts (03), assigns (04), completes (06).
    for (code, extra) in [
        ("03", json!({})),
        ("04", json!({"assignee": "Phòng Tổ chức"})),
        ("06", json!({})),
    ] {
        let mut body = json!({"code": code});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let answer = node
            .post(&format!("/v1/documents/{id}/status"), "token-b", body)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.json()["code"], code);
    }

    // A traces it: B's chain 01, 03, 04, 06 with times; the sealed assignee opens for A.
    let trace = node.wait_trace(&id, &["01", "03", "04", "06"]).await;
    assert_eq!(trace["sender"], A);
    let b = &trace["recipients"][0];
    assert_eq!(b["recipient"], B);
    assert_eq!(b["stage"], "06");
    assert_eq!(statuses(&b["history"]), ["01", "03", "04", "06"]);
    assert_eq!(b["history"][2]["assignee"], "Phòng Tổ chức");
    assert!(b["history"][0]["at"].as_str().unwrap().ends_with('Z'));
    // A's inbox has B's statuses; B's own trace shows its copy.
    node.wait_inbox("token-a", A, &id, "status").await;
    let own = node
        .get(&format!("/v1/documents/{id}/trace"), "token-b")
        .await
        .json();
    assert_eq!(own["recipients"].as_array().unwrap().len(), 1);

    // The sender cannot open what is sealed for the recipients.
    node.get(&format!("/v1/documents/{id}"), "token-a")
        .await
        .problem(StatusCode::FORBIDDEN, None);
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_sends_answer_the_first_content_id() {
    let node = node();
    let with_key = |key: &str, subject: &str| {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/documents")
            .header(header::AUTHORIZATION, "Bearer token-a")
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .header("Idempotency-Key", key)
            .body(Body::from(
                serde_json::to_vec(&document(subject, "H41,2026/11/23,1/CV")).unwrap(),
            ))
            .unwrap()
    };
    let first = node.request(with_key("k-1", "Một")).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(first.json()["duplicate"], false);
    let again = node.request(with_key("k-1", "Một")).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.json()["id"], first.json()["id"]);
    assert_eq!(again.json()["duplicate"], true);
    // The same key for another request is a conflict.
    node.request(with_key("k-1", "Hai"))
        .await
        .problem(StatusCode::CONFLICT, Some("idempotency-key"));
    node.request(with_key("bad key", "Hai"))
        .await
        .problem(StatusCode::BAD_REQUEST, Some("idempotency-key"));

    // Without a key, the DMS's DocumentId is the key.
    let one = node.send(document("Ba", "H41,2026/11/23,3/CV")).await;
    let answer = node
        .post(
            "/v1/documents",
            "token-a",
            document("Ba", "H41,2026/11/23,3/CV"),
        )
        .await;
    assert_eq!(answer.json()["id"], one.as_str());
    assert_eq!(answer.json()["duplicate"], true);
    node.post(
        "/v1/documents",
        "token-a",
        document("Bốn", "H41,2026/11/23,3/CV"),
    )
    .await
    .problem(StatusCode::CONFLICT, Some("header.document_id"));
    // Two documents, each delivered once.
    let page = tokio::time::timeout(WAIT, async {
        loop {
            let page = node
                .get("/v1/inbox?tenant=000.00.01.H41", "token-b")
                .await
                .json();
            if page["entries"].as_array().unwrap().len() >= 2 {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let page2 = node
        .get("/v1/inbox?tenant=000.00.01.H41", "token-b")
        .await
        .json();
    assert_eq!(page2["entries"], page["entries"]);
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_tenancy() {
    let node = node();
    let none = node.call(Method::GET, "/v1/inbox", None, None).await;
    none.problem(StatusCode::UNAUTHORIZED, None);
    assert!(none.headers.contains_key(header::WWW_AUTHENTICATE));
    node.get("/v1/inbox", "wrong-token")
        .await
        .problem(StatusCode::UNAUTHORIZED, Some("authorization"));
    let basic = Request::builder()
        .uri("/v1/agencies")
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(Body::empty())
        .unwrap();
    node.request(basic)
        .await
        .problem(StatusCode::UNAUTHORIZED, Some("authorization"));
    // B's token does not act for A.
    node.post(
        "/v1/documents",
        "token-b",
        document("x", "H41,2026/11/23,9/CV"),
    )
    .await
    .problem(StatusCode::FORBIDDEN, Some("header.from.organ_id"));
    node.get(&format!("/v1/inbox?tenant={A}"), "token-b")
        .await
        .problem(StatusCode::FORBIDDEN, Some("tenant"));
    // A token for two tenants names one; a token's tenant must be hosted here.
    node.get("/v1/inbox", "token-ab")
        .await
        .problem(StatusCode::BAD_REQUEST, Some("tenant"));
    assert_eq!(
        node.get(&format!("/v1/inbox?tenant={B}"), "token-ab")
            .await
            .status,
        StatusCode::OK
    );
    node.get("/v1/inbox?tenant=not%20an%20id", "token-ab")
        .await
        .problem(StatusCode::BAD_REQUEST, Some("tenant"));
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversize_and_invalid_sends_store_nothing() {
    let node = node_with(ApiConfig {
        max_body_bytes: 64 * 1024,
        ..ApiConfig::default()
    });
    let raw = |content_type: Option<&str>, body: Vec<u8>, length: bool| {
        let mut r = Request::builder()
            .method(Method::POST)
            .uri("/v1/documents")
            .header(header::AUTHORIZATION, "Bearer token-a");
        if let Some(ct) = content_type {
            r = r.header(header::CONTENT_TYPE, ct);
        }
        if length {
            r = r.header(header::CONTENT_LENGTH, body.len());
        }
        r.body(Body::from(body)).unwrap()
    };
    // Syntax: 400.
    node.request(raw(
        Some("application/json"),
        b"{\"header\": ".to_vec(),
        true,
    ))
    .await
    .problem(StatusCode::BAD_REQUEST, Some("body"));
    let mut trailing = serde_json::to_vec(&document("x", "H41,2026/11/23,5/CV")).unwrap();
    trailing.extend_from_slice(b" {}");
    node.request(raw(Some("application/json"), trailing, true))
        .await
        .problem(StatusCode::BAD_REQUEST, None);
    // Media type: 415 for anything but JSON and edXML.
    node.request(raw(Some("text/plain"), b"{}".to_vec(), true))
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("content-type"));
    node.request(raw(None, b"{}".to_vec(), true))
        .await
        .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("content-type"));
    // Size: 413 from Content-Length before reading, and while reading without it.
    let big = serde_json::to_vec(&json!({"pad": "x".repeat(100 * 1024)})).unwrap();
    node.request(raw(Some("application/json"), big.clone(), true))
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE, None);
    let chunked = Request::builder()
        .method(Method::POST)
        .uri("/v1/documents")
        .header(header::AUTHORIZATION, "Bearer token-a")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures::stream::iter(
            big.chunks(4096)
                .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )))
        .unwrap();
    node.request(chunked)
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE, None);

    // Shape and values: 422 naming the field.
    let mut missing = document("x", "H41,2026/11/23,5/CV");
    missing["header"].as_object_mut().unwrap().remove("subject");
    let p = node
        .post("/v1/documents", "token-a", missing)
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, None);
    assert!(p["detail"].as_str().unwrap().contains("subject"), "{p}");
    /// A change that makes a valid send body invalid, and the field the 422 must name.
    type Breakage = (fn(&mut Value), Option<&'static str>);
    let invalid: [Breakage; 11] = [
        (
            |d| d["header"]["priority"] = json!("urgent"),
            Some("header.priority"),
        ),
        (|d| d["header"]["colour"] = json!("red"), None),
        (
            |d| d["header"]["to"][0]["organ_id"] = json!("no/such"),
            Some("header.to[0].organ_id"),
        ),
        (
            |d| d["header"]["to"][0]["organ_id"] = json!("000.00.00.H99"),
            Some("header.to[0].organ_id"),
        ),
        (
            |d| d["header"]["to"][0]["organ_id"] = json!(A),
            Some("header.to[0].organ_id"),
        ),
        (
            |d| d["header"]["promulgation"]["date"] = json!("23/11/2026"),
            Some("header.promulgation.date"),
        ),
        (
            |d| d["header"]["code"]["number"] = json!("9".repeat(600)),
            Some("header.code.number"),
        ),
        (
            |d| d["attachments"][0]["data"] = json!("***"),
            Some("attachments[0].data"),
        ),
        (
            |d| d["attachments"][0]["name"] = json!("../etc/passwd"),
            Some("attachments[0].name"),
        ),
        (
            |d| {
                let one = d["attachments"][0].clone();
                d["attachments"] = json!(vec![one; 65]);
            },
            Some("attachments"),
        ),
        (
            |d| d["header"]["business"] = json!("update"),
            Some("header.business"),
        ),
    ];
    for (mutate, field) in invalid {
        let mut invalid = document("x", "H41,2026/11/23,5/CV");
        mutate(&mut invalid);
        node.post("/v1/documents", "token-a", invalid)
            .await
            .problem(StatusCode::UNPROCESSABLE_ENTITY, field);
    }

    // None of it left anything behind: no envelope, no delivery, no idempotency record.
    assert_eq!(node.driver.pending_deliveries().await.unwrap(), 0);
    assert!(node.store.scan(Column::Envelopes).unwrap().is_empty());
    assert!(node.store.scan(Column::Meta).unwrap().is_empty());
    assert!(node.store.scan(Column::Chains).unwrap().is_empty());
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_checked_and_explained() {
    let node = node();
    let id = node
        .send(document("Trạng thái", "H41,2026/11/23,7/CV"))
        .await;
    node.wait_inbox("token-b", B, &id, "document").await;
    let status = |code: &str| format!("/v1/documents/{code}/status");
    let url = status(&id);
    // 06 before 03 may not follow 01: 409 saying why.
    let p = node
        .post(&url, "token-b", json!({"code": "06"}))
        .await
        .problem(StatusCode::CONFLICT, Some("code"));
    assert!(p["detail"].as_str().unwrap().contains("accepted"), "{p}");
    node.post(&url, "token-b", json!({"code": "99"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("code"));
    node.post(&url, "token-b", json!({"code": "01"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("code"));
    node.post(&url, "token-b", json!({"code": "13", "reason": "x"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("code"));
    node.post(&url, "token-b", json!({"code": "02"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("reason"));
    node.post(&url, "token-b", json!({"code": "04"}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("assignee"));
    node.post(&url, "token-b", json!({"code": 3}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("code"));
    // The sender does not post recipients' statuses.
    node.post(&url, "token-a", json!({"code": "03"}))
        .await
        .problem(StatusCode::FORBIDDEN, None);
    // Unknown and malformed documents.
    let unknown = &unknown_id();
    node.post(&status(unknown), "token-b", json!({"code": "03"}))
        .await
        .problem(StatusCode::NOT_FOUND, None);
    node.post(&status("not-a-cid"), "token-b", json!({"code": "03"}))
        .await
        .problem(StatusCode::BAD_REQUEST, Some("id"));
    for path in ["", "/header", "/trace", "/attachments/0"] {
        node.get(&format!("/v1/documents/{unknown}{path}"), "token-b")
            .await
            .problem(StatusCode::NOT_FOUND, None);
    }
    node.get(&format!("/v1/documents/{id}/attachments/5"), "token-b")
        .await
        .problem(StatusCode::NOT_FOUND, Some("n"));
    node.get(&format!("/v1/documents/{id}/attachments/x"), "token-b")
        .await
        .problem(StatusCode::BAD_REQUEST, Some("n"));
    // A rejection with its reason; nothing may follow.
    let answer = node
        .post(
            &url,
            "token-b",
            json!({"code": "02", "reason": "Sai thể thức"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    node.post(&url, "token-b", json!({"code": "03"}))
        .await
        .problem(StatusCode::CONFLICT, Some("code"));
    let trace = node.wait_trace(&id, &["01", "02"]).await;
    assert_eq!(
        trace["recipients"][0]["history"][1]["reason"],
        "Sai thể thức"
    );
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_and_update_act_on_the_earlier_document() {
    let node = node();
    let id = node.send(document("Thu hồi", "H41,2026/11/23,8/CV")).await;
    node.wait_inbox("token-b", B, &id, "document").await;
    let recall = format!("/v1/documents/{id}/recall");
    node.post(&recall, "token-a", json!({}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, None);
    node.post(
        &recall,
        "token-a",
        json!({"reason": "Nhầm", "recipients": [C]}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("recipients[0]"));
    node.post(&recall, "token-b", json!({"reason": "Nhầm"}))
        .await
        .problem(StatusCode::FORBIDDEN, None);
    let answer = node
        .post(&recall, "token-a", json!({"reason": "Nhầm số"}))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["code"], "13");
    // A second request while one waits: 409.
    node.post(&recall, "token-a", json!({"reason": "Lần nữa"}))
        .await
        .problem(StatusCode::CONFLICT, None);
    // B sees the request (with its reason) and agrees.
    node.wait_inbox("token-b", B, &id, "status").await;
    let own = node
        .get(&format!("/v1/documents/{id}/trace"), "token-b")
        .await
        .json();
    let history = &own["recipients"][0]["history"];
    assert_eq!(statuses(history), ["01", "13"]);
    assert_eq!(history[1]["reason"], "Nhầm số");
    assert_eq!(own["recipients"][0]["request_pending"], true);
    let answer = node
        .post(
            &format!("/v1/documents/{id}/status"),
            "token-b",
            json!({"code": "15"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let trace = node.wait_trace(&id, &["01", "13", "15"]).await;
    assert_eq!(trace["recipients"][0]["stage"], "recalled");

    // A replaces and updates it: new documents naming the earlier one.
    for (action, kind) in [
        ("update", "update"),
        ("replace", "replace"),
        ("revoke", "revoke"),
    ] {
        let mut doc = document("Thay thế", &format!("H41,2026/11/24,{action}/CV"));
        doc["header"]["business_ref"] =
            json!({"document_id": "H41,2026/11/23,8/CV", "organ_id": A});
        let url = format!("/v1/documents/{id}/{action}");
        node.post(&url, "token-b", {
            let mut d = doc.clone();
            d["header"]["from"]["organ_id"] = json!(B);
            d["header"]["to"][0]["organ_id"] = json!(A);
            d
        })
        .await
        .problem(StatusCode::FORBIDDEN, None);
        let answer = node.post(&url, "token-a", doc).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let new_id = answer.json()["id"].as_str().unwrap().to_owned();
        let entry = node.wait_inbox("token-b", B, &new_id, kind).await;
        assert_eq!(entry["refers_to"], id.as_str());
        let opened = node
            .get(&format!("/v1/documents/{new_id}"), "token-b")
            .await
            .json();
        assert_eq!(opened["header"]["business"], kind);
        assert_eq!(opened["refers_to"], id.as_str());
    }
    let mut no_ref = document("Thay thế", "H41,2026/11/24,x/CV");
    no_ref["header"]["subject"] = json!("không có tham chiếu");
    node.post(&format!("/v1/documents/{id}/update"), "token-a", no_ref)
        .await
        .problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("header.business_ref"),
        );
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_pages_and_event_stream() {
    let node = node_with(ApiConfig {
        max_streams: 1,
        keep_alive: Duration::from_millis(100),
        ..ApiConfig::default()
    });
    // The stream, opened before anything arrives, sees what arrives.
    let stream = Request::builder()
        .uri(format!("/v1/inbox/stream?tenant={B}"))
        .header(header::AUTHORIZATION, "Bearer token-ab")
        .body(Body::empty())
        .unwrap();
    let response = node.router.clone().oneshot(stream).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    // One stream at most here: the second is a 429.
    let second = Request::builder()
        .uri("/v1/inbox/stream")
        .header(header::AUTHORIZATION, "Bearer token-b")
        .body(Body::empty())
        .unwrap();
    let second = node.request(second).await;
    second.problem(StatusCode::TOO_MANY_REQUESTS, None);
    assert!(second.headers.contains_key(header::RETRY_AFTER));

    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(
            node.send(document("Luồng", &format!("H41,2026/11/23,{n}/S")))
                .await,
        );
    }
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while ids.iter().any(|id| !text.contains(id.as_str())) {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stream showed only {text}"));
    assert!(text.contains("event: inbox"), "{text}");
    assert!(text.contains("id: 0") && text.contains("id: 2"), "{text}");
    drop(body);

    // Pages after a cursor.
    let page = node
        .get(&format!("/v1/inbox?tenant={B}&limit=2"), "token-b")
        .await
        .json();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["id"], ids[0].as_str());
    assert_eq!(page["next"], 1);
    let page = node.get("/v1/inbox?after=1", "token-b").await.json();
    assert_eq!(page["entries"][0]["id"], ids[2].as_str());
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let page = node.get("/v1/inbox?after=2", "token-b").await.json();
    assert!(page["entries"].as_array().unwrap().is_empty());
    assert!(page.get("next").is_none());
    for bad in ["limit=0", "limit=100000", "limit=abc", "after=-1"] {
        let field = bad.split('=').next().unwrap();
        node.get(&format!("/v1/inbox?{bad}"), "token-b")
            .await
            .problem(StatusCode::BAD_REQUEST, Some(field));
    }

    // Resuming with Last-Event-ID replays what follows it (the first stream is closed).
    let resume = Request::builder()
        .uri("/v1/inbox/stream")
        .header(header::AUTHORIZATION, "Bearer token-b")
        .header("Last-Event-ID", "0")
        .body(Body::empty())
        .unwrap();
    let response = node.router.clone().oneshot(resume).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while !text.contains(ids[2].as_str()) {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .unwrap();
    assert!(!text.contains(ids[0].as_str()) && text.contains(ids[1].as_str()));
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agencies_health_metrics_and_unknown_routes() {
    let node = node();
    let agencies = node.get("/v1/agencies", "token-a").await;
    assert_eq!(agencies.status, StatusCode::OK);
    let agencies = agencies.json();
    assert_eq!(agencies["epoch"], 1);
    let list = agencies["agencies"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let hosted: Vec<bool> = list
        .iter()
        .map(|a| a["hosted_here"].as_bool().unwrap())
        .collect();
    assert_eq!(hosted, [true, false, true], "A, C, B in id order");
    assert_eq!(list[0]["state"], "active");
    node.call(Method::GET, "/v1/agencies", None, None)
        .await
        .problem(StatusCode::UNAUTHORIZED, None);

    let live = node.call(Method::GET, "/v1/health/live", None, None).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = node.call(Method::GET, "/v1/health/ready", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["pending_deliveries"], 0);

    node.send(document("Đo", "H41,2026/11/23,1/M")).await;
    let metrics = node.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for name in [
        "lienthong_http_requests_total{route=\"/v1/documents\",method=\"POST\",status=\"202\"} 1",
        "lienthong_http_request_duration_seconds_bucket",
        "lienthong_send_ack_duration_seconds_count 1",
        "lienthong_pending_deliveries",
        "lienthong_peers 7",
        "lienthong_inbox_deliveries_total",
        "lienthong_store_groups_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }

    node.get("/v1/nothing", "token-a")
        .await
        .problem(StatusCode::NOT_FOUND, None);
    let wrong = node
        .call(Method::DELETE, "/v1/documents", Some("token-a"), None)
        .await;
    wrong.problem(StatusCode::METHOD_NOT_ALLOWED, None);
    assert!(wrong.headers.contains_key(header::ALLOW));

    // A stopped driver: 503 (send, status, readiness), never a plain error.
    node.driver.shutdown().await;
    node.post(
        "/v1/documents",
        "token-a",
        document("Dừng", "H41,2026/11/23,2/M"),
    )
    .await
    .problem(StatusCode::SERVICE_UNAVAILABLE, None);
    let ready = node.call(Method::GET, "/v1/health/ready", None, None).await;
    ready.problem(StatusCode::SERVICE_UNAVAILABLE, None);
    assert!(ready.headers.contains_key(header::RETRY_AFTER));
}

/// Every route of the router has a schema in the OpenAPI document, and every path and
/// method of the document is routed. The router is built only from `routes!(…)` (each
/// handler's `#[utoipa::path]`), which the source check below keeps true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let node = node();
    let served = node.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(served.status, StatusCode::OK);
    let doc = served.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc, serde_json::to_value(api::openapi()).unwrap());
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path}"
            );
            routes.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    routes.sort();
    let expected = [
        "GET /metrics",
        "GET /v1/agencies",
        "GET /v1/documents/{id}",
        "GET /v1/documents/{id}/attachments/{n}",
        "GET /v1/documents/{id}/edxml",
        "GET /v1/documents/{id}/header",
        "GET /v1/documents/{id}/trace",
        "GET /v1/health/live",
        "GET /v1/health/ready",
        "GET /v1/inbox",
        "GET /v1/inbox/stream",
        "GET /v1/openapi.json",
        "GET /v1/statuses/{id}/edxml",
        "POST /v1/documents",
        "POST /v1/documents/{id}/recall",
        "POST /v1/documents/{id}/replace",
        "POST /v1/documents/{id}/revoke",
        "POST /v1/documents/{id}/status",
        "POST /v1/documents/{id}/update",
    ];
    assert_eq!(routes, expected);
    // Each documented route is served (its handler answers, not the router's 404 or 405).
    for route in &routes {
        let (method, path) = route.split_once(' ').unwrap();
        let path = path.replace("{id}", &unknown_id()).replace("{n}", "0");
        let request = Request::builder()
            .method(method)
            .uri(format!("{path}?tenant={A}"))
            .header(header::AUTHORIZATION, "Bearer token-a")
            .body(Body::empty())
            .unwrap();
        // Only the head: the event stream's body never ends.
        let response = node.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let unrouted = status == StatusCode::METHOD_NOT_ALLOWED
            || (status == StatusCode::NOT_FOUND && {
                let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                    .await
                    .unwrap();
                serde_json::from_slice::<Value>(&body).unwrap()["detail"] == "no such endpoint"
            });
        assert!(!unrouted, "{route} is documented but not routed: {status}");
    }
    // The committed copy for DMS integrators (docs/openapi.json) is current; regenerate it
    // with `LIENTHONG_UPDATE_GOLDEN=1 cargo test -p lienthong-node --test api openapi`.
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let current = format!("{}\n", serde_json::to_string_pretty(&doc).unwrap());
    if std::env::var_os("LIENTHONG_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &current).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&golden).unwrap_or_default(),
        current,
        "docs/openapi.json is stale: regenerate it (see above)"
    );
    // No route is added beside `routes!` (it would have no schema).
    for (name, source) in [
        ("mod.rs", include_str!("../src/api/mod.rs")),
        ("documents.rs", include_str!("../src/api/documents.rs")),
        ("inbox.rs", include_str!("../src/api/inbox.rs")),
        ("system.rs", include_str!("../src/api/system.rs")),
    ] {
        for banned in [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
        ] {
            assert!(
                !source.contains(banned),
                "{name} adds a route with `{banned}`: use routes!(…)"
            );
        }
    }
    node.driver.shutdown().await;
}

/// Serves `node`'s router on a loopback port; returns its base URL.
async fn serve(node: &Node) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = node.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_client_commands_against_a_served_node() {
    use lienthong_node::cli::{ClientCommand, Outcome, execute};
    let node = node();
    let base = serve(&node).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |cmd: ClientCommand, token: &'static str| {
        let base = base.clone();
        async move {
            let mut out = Vec::new();
            let outcome = execute(cmd, &base, token, &mut out).await;
            (outcome, String::from_utf8(out).unwrap())
        }
    };

    let (outcome, out) = run(ClientCommand::Agencies { json: false }, "token-a").await;
    assert_eq!(outcome, Outcome::Done);
    assert!(
        out.starts_with("ID") && out.contains(A) && out.contains("roster epoch 1"),
        "{out}"
    );

    let file = dir.path().join("doc.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&document("Qua CLI", "H41,2026/11/23,1/CLI")).unwrap(),
    )
    .unwrap();
    let send = ClientCommand::Send {
        file: file.clone(),
        idempotency_key: None,
        json: true,
    };
    let (outcome, out) = run(send.clone(), "token-a").await;
    assert_eq!(outcome, Outcome::Done, "{out}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, out) = run(send, "token-a").await;
    assert!(out.contains("\"duplicate\": true"), "{out}");

    node.wait_inbox("token-b", B, &id, "document").await;
    let inbox = ClientCommand::Inbox {
        tenant: None,
        after: None,
        limit: 10,
        json: false,
    };
    let (outcome, out) = run(inbox, "token-b").await;
    assert_eq!(outcome, Outcome::Done);
    assert!(
        out.starts_with("POS") && out.contains(&id) && out.contains("next: --after 0"),
        "{out}"
    );

    let show = |attachment, output| ClientCommand::Show {
        id: id.clone(),
        tenant: None,
        attachment,
        output,
        edxml: false,
        json: false,
    };
    let (outcome, out) = run(show(None, None), "token-b").await;
    assert_eq!(outcome, Outcome::Done);
    assert!(
        out.contains("Qua CLI") && out.contains("quyet-dinh 123.pdf"),
        "{out}"
    );
    let saved = dir.path().join("saved.pdf");
    let (outcome, _) = run(show(Some(0), Some(saved.clone())), "token-b").await;
    assert_eq!(outcome, Outcome::Done);
    assert_eq!(std::fs::read(&saved).unwrap(), b"%PDF-1.7 signed bytes");
    // The document as edXML, saved and sent again: the same document, the first id.
    let saved_xml = dir.path().join("doc.xml");
    let (outcome, out) = run(
        ClientCommand::Show {
            id: id.clone(),
            tenant: None,
            attachment: None,
            output: Some(saved_xml.clone()),
            edxml: true,
            json: false,
        },
        "token-b",
    )
    .await;
    assert_eq!(outcome, Outcome::Done, "{out}");
    let xml = std::fs::read(&saved_xml).unwrap();
    assert!(
        xml.starts_with(b"<?xml") || xml.starts_with(b"<edXML"),
        "{out}"
    );
    let (outcome, out) = run(
        ClientCommand::Send {
            file: saved_xml,
            idempotency_key: None,
            json: true,
        },
        "token-a",
    )
    .await;
    assert_eq!(outcome, Outcome::Done, "{out}");
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (again["id"].as_str(), again["duplicate"].as_bool()),
        (Some(id.as_str()), Some(true))
    );

    let status = |code: &str| ClientCommand::Status {
        id: id.clone(),
        code: code.into(),
        reason: None,
        assignee: None,
        tenant: None,
        json: false,
    };
    let (outcome, out) = run(status("03"), "token-b").await;
    assert_eq!(outcome, Outcome::Done, "{out}");
    assert!(out.starts_with("status 03 posted"), "{out}");
    // Refused by the node: exit code 3.
    assert_eq!(run(status("06x"), "token-b").await.0, Outcome::Refused);
    assert_eq!(run(status("03"), "no-such-token").await.0, Outcome::Refused);
    node.wait_trace(&id, &["01", "03"]).await;
    let trace = ClientCommand::Trace {
        id: id.clone(),
        tenant: None,
        json: false,
    };
    let (outcome, out) = run(trace, "token-a").await;
    assert_eq!(outcome, Outcome::Done);
    assert!(
        out.contains("RECIPIENT") && out.contains("accepted"),
        "{out}"
    );
    let recall = ClientCommand::Recall {
        id: id.clone(),
        reason: "Nhầm".into(),
        recipients: vec![],
        tenant: None,
        json: false,
    };
    let (outcome, out) = run(recall, "token-a").await;
    assert_eq!(outcome, Outcome::Done, "{out}");

    // Usage error (exit 2) and unreachable node (exit 4).
    let missing = ClientCommand::Send {
        file: dir.path().join("missing.json"),
        idempotency_key: None,
        json: false,
    };
    assert_eq!(run(missing, "token-a").await.0, Outcome::Usage);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut out = Vec::new();
    let outcome = execute(
        ClientCommand::Agencies { json: true },
        &format!("http://{closed}"),
        "token-a",
        &mut out,
    )
    .await;
    assert_eq!(outcome, Outcome::Unreachable);
    assert_eq!(
        [
            Outcome::Done,
            Outcome::Usage,
            Outcome::Refused,
            Outcome::Unreachable
        ]
        .map(Outcome::code),
        [0, 2, 3, 4]
    );
    node.driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_in_flight_limit_get_429() {
    let node = node_with(ApiConfig {
        max_in_flight: 1,
        ..ApiConfig::default()
    });
    // A send whose body is still arriving holds the only slot.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let slow = Request::builder()
        .method(Method::POST)
        .uri("/v1/documents")
        .header(header::AUTHORIZATION, "Bearer token-a")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(rx))
        .unwrap();
    futures::SinkExt::send(&mut tx, Ok(Bytes::from_static(b"{")))
        .await
        .unwrap();
    // Polled here only, so the probes below never race it for the slot: once it holds the
    // slot (waiting for the rest of its body), a probe gets 429.
    let mut first = std::pin::pin!(node.router.clone().oneshot(slow));
    let busy = tokio::time::timeout(WAIT, async {
        loop {
            tokio::select! {
                biased;
                r = &mut first => panic!("the slow request ended: {}", r.unwrap().status()),
                () = tokio::task::yield_now() => {}
            }
            let probe = node.get("/v1/agencies", "token-a").await;
            if probe.status != StatusCode::OK {
                return probe;
            }
        }
    })
    .await
    .unwrap();
    busy.problem(StatusCode::TOO_MANY_REQUESTS, None);
    assert_eq!(busy.headers[header::RETRY_AFTER], "1");
    // The slot frees when the first request ends (here: a truncated JSON body, 400).
    drop(tx);
    assert_eq!(first.await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        node.get("/v1/agencies", "token-a").await.status,
        StatusCode::OK
    );
    node.driver.shutdown().await;
}

/// The idempotency record is written with the envelope (one batch, durable together): once
/// a send is answered, the record names the answered content id, and the request's
/// fingerprint follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_record_is_durable_with_the_envelope() {
    let node = node();
    assert!(node.store.scan(Column::Meta).unwrap().is_empty());
    let id = node.send(document("Bản ghi", "H41,2026/11/23,11/CV")).await;
    let content_id = lienthong_protocol::content_id::ContentId::parse(&id).unwrap();
    let rows = node.store.scan(Column::Meta).unwrap();
    assert_eq!(
        rows.len(),
        2,
        "the idempotency record and the sent reference"
    );
    let (key, value) = rows
        .iter()
        .find(|(k, _)| k.starts_with(b"api/idempotency\0"))
        .unwrap();
    let expected_key = [
        b"api/idempotency\0".as_slice(),
        A.as_bytes(),
        b"\0d:H41,2026/11/23,11/CV",
    ]
    .concat();
    assert_eq!(key, &expected_key);
    assert_eq!(value.len(), 32 + 32, "content id ‖ SHA-256 of the request");
    assert_eq!(&value[..32], content_id.as_bytes());
    assert!(
        node.store
            .get(Column::Envelopes, content_id.as_bytes())
            .unwrap()
            .is_some()
    );
    node.driver.shutdown().await;
}

impl Node {
    /// POSTs `xml` as `application/xml` to `uri` with `token`.
    async fn post_xml(&self, uri: &str, token: &str, xml: &[u8]) -> Answer {
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/xml")
            .body(Body::from(xml.to_vec()))
            .unwrap();
        self.request(request).await
    }
}

/// edXML in and out: a received document is exported as an edXML envelope that reads back
/// as the same document; that envelope sent again is the same request (same content id);
/// edited, it is a new document that the recipient opens as sent; every bad edXML send is
/// a 422 or 403 naming the element, and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edxml_documents_in_and_out() {
    use lienthong_protocol::edxml;
    let node = node();
    let id = node
        .send(document("Về việc edXML", "H41,2026/11/23,77/QĐ-UBND"))
        .await;
    node.wait_inbox("token-b", B, &id, "document").await;
    let exported = node
        .get(&format!("/v1/documents/{id}/edxml?tenant={B}"), "token-b")
        .await;
    assert_eq!(exported.status, StatusCode::OK);
    assert_eq!(
        exported.headers[header::CONTENT_TYPE],
        "application/xml; charset=utf-8"
    );
    assert_eq!(
        exported.headers[header::CONTENT_LENGTH],
        exported.body.len().to_string().as_str()
    );
    let xml = exported.body.to_vec();
    let text = String::from_utf8(xml.clone()).unwrap();
    assert!(text.contains(edxml::EDXML_NAMESPACE), "{text}");
    let read = edxml::document_from_edxml(&xml).unwrap();
    assert_eq!(read.header.subject, "Về việc edXML");
    assert_eq!(read.header.document_id, "H41,2026/11/23,77/QĐ-UBND");
    assert_eq!(read.attachments.len(), 1);
    assert_eq!(read.attachments[0].data, b"%PDF-1.7 signed bytes");
    // Its sender cannot open it (it is sealed for the recipients).
    node.get(&format!("/v1/documents/{id}/edxml"), "token-a")
        .await
        .problem(StatusCode::FORBIDDEN, None);

    // The same document as edXML is the same request: the first content id, a duplicate.
    let again = node.post_xml("/v1/documents", "token-a", &xml).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.json());
    assert_eq!(again.json()["id"], id.as_str());
    assert_eq!(again.json()["duplicate"], true);

    // A new document in edXML (another DocumentId, another subject) is sent and opens as
    // sent, in JSON and in edXML.
    let mut fresh = read.clone();
    fresh.header.document_id = "H41,2026/11/24,78/QĐ-UBND".to_owned();
    fresh.header.subject = "Gửi bằng edXML".to_owned();
    let fresh_xml = edxml::document_to_edxml(&fresh).unwrap();
    let sent = node.post_xml("/v1/documents", "token-a", &fresh_xml).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.json());
    assert_eq!(sent.json()["duplicate"], false);
    let fresh_id = sent.json()["id"].as_str().unwrap().to_owned();
    assert_ne!(fresh_id, id);
    node.wait_inbox("token-b", B, &fresh_id, "document").await;
    let opened = node
        .get(&format!("/v1/documents/{fresh_id}?tenant={B}"), "token-b")
        .await
        .json();
    assert_eq!(opened["header"]["subject"], "Gửi bằng edXML");
    let back = node
        .get(
            &format!("/v1/documents/{fresh_id}/edxml?tenant={B}"),
            "token-b",
        )
        .await;
    assert_eq!(edxml::document_from_edxml(&back.body).unwrap(), fresh);

    // Refusals name the element, and store nothing.
    let envelopes = node.store.scan(Column::Envelopes).unwrap().len();
    let meta = node.store.scan(Column::Meta).unwrap().len();
    let replace = |from: &str, to: &str| {
        let edited = text.replacen(from, to, 1);
        assert_ne!(edited, text, "{from:?} is in the export");
        edited.into_bytes()
    };
    let subject = "<edXML:Subject>Về việc edXML</edXML:Subject>";
    // An update is sent with /v1/documents/{id}/update, not as a new document.
    let mut update = fresh.clone();
    update.header.document_id = "H41,2026/11/24,79/QĐ-UBND".to_owned();
    update.header.business = lienthong_protocol::document::BusinessType::Update;
    update.header.business_ref = Some(edxml::StatusMessage::reference_to(&read.header));
    let cases: [(Vec<u8>, StatusCode, &str); 6] = [
        (
            b"<edXML:edXMLEnvelope".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "body",
        ),
        (
            replace(subject, ""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "MessageHeader/Subject",
        ),
        (
            replace(
                &format!("<edXML:OrganId>{B}</edXML:OrganId>"),
                "<edXML:OrganId>000.00.00.H99</edXML:OrganId>",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "MessageHeader/To[1]/OrganId",
        ),
        (
            edxml::document_to_edxml(&update).unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "TraceHeaderList/Bussiness/BussinessDocType",
        ),
        (
            replace(
                "<edXML:BussinessDocType>0</edXML:BussinessDocType>",
                "<edXML:BussinessDocType>7</edXML:BussinessDocType>",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "TraceHeaderList/Bussiness/BussinessDocType",
        ),
        (
            replace(
                &format!("<edXML:OrganId>{A}</edXML:OrganId>"),
                &format!("<edXML:OrganId>{C}</edXML:OrganId>"),
            ),
            StatusCode::FORBIDDEN,
            "MessageHeader/From/OrganId",
        ),
    ];
    for (xml, status, field) in cases {
        let p = node
            .post_xml("/v1/documents", "token-a", &xml)
            .await
            .problem(status, Some(field));
        assert!(p["detail"].as_str().unwrap().len() > 10, "{p}");
    }
    // A new document's edXML on the update route says the wrong thing, too.
    node.post_xml(&format!("/v1/documents/{id}/update"), "token-a", &fresh_xml)
        .await
        .problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("TraceHeaderList/Bussiness/BussinessDocType"),
        );
    assert_eq!(node.store.scan(Column::Envelopes).unwrap().len(), envelopes);
    assert_eq!(node.store.scan(Column::Meta).unwrap().len(), meta);

    // The update itself goes by the update route, naming the earlier document.
    let updated = node
        .post_xml(
            &format!("/v1/documents/{id}/update"),
            "token-a",
            &edxml::document_to_edxml(&update).unwrap(),
        )
        .await;
    assert_eq!(updated.status, StatusCode::ACCEPTED, "{}", updated.json());
    let update_id = updated.json()["id"].as_str().unwrap().to_owned();
    let entry = node.wait_inbox("token-b", B, &update_id, "update").await;
    assert_eq!(entry["refers_to"], id.as_str());
    node.driver.shutdown().await;
}

/// Statuses in edXML: a recipient's DMS posts 03 and 04 as edXML status messages; the
/// sender reads each status of its document as an edXML status message naming the document
/// by its DocumentId, with the reason or assignee it alone can open; refusals name the
/// element and post nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edxml_statuses_in_and_out() {
    use lienthong_protocol::document::Organization;
    use lienthong_protocol::edxml::{self, StaffInfo, StatusMessage};
    use lienthong_protocol::status::StatusCode as Code;
    let node = node();
    let document_id = "H41,2026/11/24,80/QĐ-UBND";
    let id = node.send(document("Trạng thái edXML", document_id)).await;
    node.wait_inbox("token-b", B, &id, "document").await;
    let exported = node
        .get(&format!("/v1/documents/{id}/edxml?tenant={B}"), "token-b")
        .await;
    let header = edxml::document_from_edxml(&exported.body).unwrap().header;
    let b = Organization {
        organ_id: agency(B),
        organ_name: "Sở Nội vụ".to_owned(),
        organ_address: None,
        email: None,
        telephone: None,
    };
    let status =
        |code: Code| StatusMessage::for_document(&header, b.clone(), code, 1_795_000_000_000);
    let url = format!("/v1/documents/{id}/status");
    let post = |message: StatusMessage| {
        let node = &node;
        let url = url.clone();
        async move {
            node.post_xml(&url, "token-b", &edxml::status_to_edxml(&message).unwrap())
                .await
        }
    };

    // Refusals first: nothing is posted.
    let mut wrong_document = status(Code::Accepted);
    wrong_document.response_for.document_id = "H41,2026/11/24,81/QĐ-UBND".to_owned();
    let mut wrong_sender = status(Code::Accepted);
    wrong_sender.response_for.organ_id = agency(C);
    let mut not_ours = status(Code::Accepted);
    not_ours.from.organ_id = agency(C);
    let cases = [
        (
            status(Code::Arrived),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Status/StatusCode",
        ),
        (
            wrong_document,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Status/ResponseFor/DocumentId",
        ),
        (
            wrong_sender,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Status/ResponseFor/OrganId",
        ),
        (not_ours, StatusCode::FORBIDDEN, "Status/From/OrganId"),
    ];
    for (message, code, field) in cases {
        post(message).await.problem(code, Some(field));
    }
    node.post_xml(&url, "token-b", b"<edXML:edXMLEnvelope")
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, Some("body"));
    let trace = node.wait_trace(&id, &["01"]).await;
    assert_eq!(statuses(&trace["recipients"][0]["history"]), ["01"]);

    // 03, then 04 to a named staff member.
    let accepted = post(status(Code::Accepted)).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.json());
    assert_eq!(accepted.json()["code"], "03");
    let assigned = post(
        status(Code::Assigned)
            .with_staff(StaffInfo::person("Trần Văn B", Some("Phòng CCHC".into()))),
    )
    .await;
    assert_eq!(assigned.status, StatusCode::ACCEPTED, "{}", assigned.json());
    let assigned_id = assigned.json()["id"].as_str().unwrap().to_owned();
    let trace = node.wait_trace(&id, &["01", "03", "04"]).await;
    assert_eq!(
        trace["recipients"][0]["history"][2]["assignee"],
        "Trần Văn B"
    );

    // The sender reads the 04 as edXML: its document named by DocumentId, the assignee.
    node.wait_inbox("token-a", A, &assigned_id, "status").await;
    let answer = node
        .get(&format!("/v1/statuses/{assigned_id}/edxml"), "token-a")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/xml; charset=utf-8"
    );
    let read = edxml::status_from_edxml(&answer.body).unwrap();
    assert_eq!(read.code, Code::Assigned);
    assert_eq!(read.from.organ_id, agency(B));
    assert_eq!(
        read.to.as_ref().map(|o| o.organ_id.clone()),
        Some(agency(A))
    );
    assert_eq!(read.response_for, StatusMessage::reference_to(&header));
    assert_eq!(read.detail(), Some("Trần Văn B"));
    // Its poster reads its 03 too, not its 04: edXML needs the assignee, sealed for the
    // sender alone.
    let accepted_id = accepted.json()["id"].as_str().unwrap().to_owned();
    let by_poster = node
        .get(
            &format!("/v1/statuses/{accepted_id}/edxml?tenant={B}"),
            "token-b",
        )
        .await;
    assert_eq!(by_poster.status, StatusCode::OK, "{:?}", by_poster.body);
    let by_poster = edxml::status_from_edxml(&by_poster.body).unwrap();
    assert_eq!(by_poster.code, Code::Accepted);
    assert_eq!(by_poster.response_for, read.response_for);
    node.get(
        &format!("/v1/statuses/{assigned_id}/edxml?tenant={B}"),
        "token-b",
    )
    .await
    .problem(StatusCode::FORBIDDEN, None);
    // The node's own 01 reads as edXML; a document's id is not a status; unknown is 404.
    let arrived = node.wait_inbox("token-a", A, &id, "status").await;
    let arrived = node
        .get(
            &format!("/v1/statuses/{}/edxml", arrived["id"].as_str().unwrap()),
            "token-a",
        )
        .await;
    assert_eq!(
        edxml::status_from_edxml(&arrived.body).unwrap().code,
        Code::Arrived
    );
    node.get(&format!("/v1/statuses/{id}/edxml"), "token-a")
        .await
        .problem(StatusCode::NOT_FOUND, None);
    node.get(&format!("/v1/statuses/{}/edxml", unknown_id()), "token-a")
        .await
        .problem(StatusCode::NOT_FOUND, None);
    node.driver.shutdown().await;
}

/// HTTPS for a DMS on another host: the API over the TLS listener answers a client that
/// trusts the certificate; a plain-HTTP client gets no answer; a client that connects and
/// says nothing does not hold up the next; unusable certificate files are refused naming
/// the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_tls() {
    use lienthong_node::api::tls::{TlsError, server_config, spawn_serve};
    let node = node();
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("api.crt");
    let key = dir.path().join("api.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let _served = spawn_serve(
        listener,
        Some(server_config(&cert, &key).unwrap()),
        node.router.clone(),
        async {
            let _ = stopped.await;
        },
        "the test API",
    )
    .unwrap();

    // A client that connects and stays silent holds one handshake slot, nothing more.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap();
    let live = client
        .get(format!("https://localhost:{port}/v1/agencies"))
        .bearer_auth("token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), reqwest::StatusCode::OK);
    let body: Value = serde_json::from_slice(&live.bytes().await.unwrap()).unwrap();
    assert_eq!(body["epoch"], 1);
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/health/live"))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the certificate is refused by its own check.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
        .get(format!("https://localhost:{port}/v1/health/live"))
        .send()
        .await;
    assert!(untrusting.is_err(), "{untrusting:?}");

    // Files that are not a certificate or a key.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM").unwrap();
    match server_config(&garbage, &key) {
        Err(TlsError::File { path, problem }) => {
            assert!(
                path.ends_with("garbage.pem") && problem.contains("no PEM certificate"),
                "{problem}"
            );
        }
        other => panic!("{other:?}"),
    }
    match server_config(&cert, &garbage) {
        Err(TlsError::File { path, problem }) => {
            assert!(
                path.ends_with("garbage.pem") && problem.contains("private key"),
                "{problem}"
            );
        }
        other => panic!("{other:?}"),
    }
    node.driver.shutdown().await;
}
