//! The agency node's ledger client against three real central logs (`lienthong-bootstrap`,
//! in process over HTTP) and two agency nodes over real libp2p: every own envelope ends up
//! in every log with a verified inclusion proof, a log stopped mid-run catches up from the
//! queues when it is back, and a forged checkpoint raises a split-view alarm with evidence.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::eventually;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use lienthong_bootstrap::config::Config;
use lienthong_bootstrap::http::AddResponse;
use lienthong_bootstrap::node::Node as LogNode;
use lienthong_node::federation::{LocalFederation, NodeSpec, free_loopback_port};
use lienthong_node::ledger::{AlarmKind, LedgerConfig};
use lienthong_node::net::{CHECKPOINTS_TOPIC, Command};
use lienthong_node::node::Node;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::example_document;
use lienthong_protocol::envelope::{Kind, Routing, SignedEnvelope};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::{Content, StatusPost};
use lienthong_protocol::rfc6962::{self, Hash};
use lienthong_protocol::signed_note::{Ed25519Signer, Ed25519Verifier};
use lienthong_protocol::status::StatusCode;
use lienthong_protocol::tlog_checkpoint::{Checkpoint, SignedCheckpoint};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tempfile::TempDir;
use tokio::net::TcpListener;

const FED: &str = "test";
const WAIT: Duration = Duration::from_secs(60);
const LOGS: [&str; 3] = ["c0", "c1", "c2"];

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

/// Three central logs (specs 0..3, only their HTTP ledgers run) and two agency nodes.
struct Rig {
    fed: LocalFederation,
    dirs: Vec<TempDir>,
    http: Vec<SocketAddr>,
}

impl Rig {
    fn new(seed: u64) -> Self {
        common::trace_to_test_output();
        let mut specs: Vec<NodeSpec> = LOGS
            .iter()
            .map(|name| NodeSpec {
                name: (*name).into(),
                central: true,
                tenants: Vec::new(),
                port: free_loopback_port(),
                http_port: Some(free_loopback_port()),
                host: std::net::Ipv4Addr::LOCALHOST,
            })
            .collect();
        for (name, code) in [("ministry", "000.00.00.G01"), ("province", "000.00.00.H41")] {
            specs.push(NodeSpec {
                name: name.into(),
                central: false,
                tenants: vec![(agency(code), format!("Agency {code}"))],
                port: free_loopback_port(),
                http_port: None,
                host: std::net::Ipv4Addr::LOCALHOST,
            });
        }
        let http = specs
            .iter()
            .take(LOGS.len())
            .map(|s| SocketAddr::from(([127, 0, 0, 1], s.http_port.unwrap())))
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let fed = LocalFederation::generate(FED, &specs, 3, 2, &mut rng).unwrap();
        let dirs = specs.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        Self { fed, dirs, http }
    }

    fn log_key(&self, i: usize) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&self.fed.nodes[i].log_seed.unwrap())
    }

    fn log_verifier(&self, i: usize) -> Ed25519Verifier {
        Ed25519Signer::new(&format!("{FED}/{}", LOGS[i]), self.log_key(i))
            .unwrap()
            .verifier()
    }

    /// Starts central log `i` on its listed HTTP port (same data directory each time).
    async fn start_log(&self, i: usize) -> LogNode {
        let listener = TcpListener::bind(self.http[i]).await.unwrap();
        self.start_log_on(i, listener).await
    }

    /// Starts central log `i` on `listener` (e.g. behind a proxy on its listed port).
    async fn start_log_on(&self, i: usize, listener: TcpListener) -> LogNode {
        let mut c = Config::new(
            FED,
            LOGS[i],
            self.dirs[i].path().join("ledger"),
            self.log_key(i),
            ed25519_dalek::SigningKey::from_bytes(&[40 + i as u8; 32]),
        )
        .unwrap();
        c.checkpoint_interval = Duration::from_millis(50);
        c.witness_interval = Duration::from_millis(200);
        c.request_timeout = Duration::from_secs(2);
        LogNode::start_on(c, listener).await.unwrap()
    }

    /// Starts agency node `a` (0 or 1) with quick ledger timings.
    async fn start_node(&self, a: usize) -> Node {
        let i = LOGS.len() + a;
        let mut setup = self.fed.setup(i, self.dirs[i].path()).unwrap();
        setup.ledger = LedgerConfig {
            pending_poll: Duration::from_millis(50),
            idle_poll: Duration::from_millis(200),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            ..LedgerConfig::default()
        };
        let node = Node::start(setup).await.unwrap();
        node.listen_addrs().await;
        node
    }
}

async fn send(node: &Node, from: &AgencyId, to: &AgencyId, subject: &str) -> ContentId {
    let document = example_document(from, std::slice::from_ref(to), subject);
    node.send_path()
        .send_document(from, Kind::Document, Routing::default(), &document)
        .await
        .unwrap()
}

async fn post(node: &Node, tenant: &AgencyId, document: ContentId, code: StatusCode) {
    node.driver()
        .post_status(StatusPost {
            request: 0,
            tenant: tenant.clone(),
            document,
            code,
            to: Vec::new(),
            content: Content::None,
        })
        .await
        .unwrap();
}

/// The ledger entries (headers) of the envelopes `tenant` signed, as `node` stores them.
fn own_entries(node: &Node, tenant: &AgencyId) -> Vec<Vec<u8>> {
    node.store()
        .scan(Column::Envelopes)
        .unwrap()
        .into_iter()
        .filter_map(|(_, v)| SignedEnvelope::decode(&v).ok())
        .filter(|e| &e.body().from == tenant)
        .map(|e| e.header_bytes())
        .collect()
}

async fn queued(node: &Node, log: &str) -> usize {
    node.ledger().queued(log).await.unwrap()
}

async fn all_queues_empty(nodes: &[&Node]) -> bool {
    for node in nodes {
        for log in LOGS {
            if queued(node, log).await > 0 {
                return false;
            }
        }
    }
    true
}

/// Checks independently of the client that `entry` is in log `i`: the log answers a
/// duplicate with its index, the checkpoint covering it and an inclusion proof, which must
/// verify against that checkpoint's signed root.
async fn assert_in_log(rig: &Rig, i: usize, entry: &[u8]) {
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{}/add", rig.http[i]))
        .body(entry.to_vec())
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "log {i} answers {}",
        resp.status()
    );
    let add: AddResponse = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(add.duplicate, "log {i} already had the entry");
    let cp = SignedCheckpoint::open(
        add.checkpoint.expect("a checkpoint covers it").as_bytes(),
        &rig.log_verifier(i),
    )
    .unwrap();
    let proof: Vec<Hash> = add
        .proof
        .unwrap()
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h)
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    rfc6962::verify_inclusion(
        add.index,
        cp.checkpoint().size(),
        &rfc6962::leaf_hash(entry),
        &proof,
        cp.checkpoint().root(),
    )
    .unwrap();
}

/// Starts both agency nodes, has `a` (node 0) send `b` (node 1) a document, waits until
/// both nodes drained their queues and the checkpoints settled (both nodes hold the one of
/// `c0`'s whole tree); returns the nodes and the checkpoint A then holds for c0.
async fn one_document_everywhere(
    rig: &Rig,
    c0: &LogNode,
    a: &AgencyId,
    b: &AgencyId,
) -> (Node, Node, SignedCheckpoint) {
    let node_a = rig.start_node(0).await;
    let node_b = rig.start_node(1).await;
    send(&node_a, a, b, "Công văn").await;
    eventually("both nodes drained their queues", WAIT, || async {
        all_queues_empty(&[&node_a, &node_b]).await && own_entries(&node_b, b).len() == 1
    })
    .await;
    // Every entry is in c0 now, so no newer checkpoint can follow the one of this size.
    let size = c0.log().head().size;
    eventually(
        "both nodes hold c0's checkpoint of every entry",
        WAIT,
        || async {
            let mut settled = true;
            for node in [&node_a, &node_b] {
                let held = node.ledger().checkpoint("c0").await;
                if held.is_none_or(|cp| cp.checkpoint().size() != size) {
                    settled = false;
                    // A node whose last own entry reached c0 before the other's holds an
                    // older checkpoint; it learns the newer one from the other's gossip,
                    // which is lost while the mesh is still forming. Hand it over as that
                    // gossip would.
                    if let Some(latest) = c0.checkpoints().latest()
                        && latest.checkpoint().size() == size
                    {
                        node.ledger()
                            .check_checkpoint(&latest.to_bytes(), "test: as gossiped")
                            .await;
                    }
                }
            }
            settled
        },
    )
    .await;
    let held = node_a.ledger().checkpoint("c0").await.unwrap();
    (node_a, node_b, held)
}

/// A checkpoint of another tree of `held`'s size, signed with c0's log key: its root and
/// the signed note.
fn forge_same_size(rig: &Rig, held: &SignedCheckpoint) -> (Hash, Vec<u8>) {
    let mut root = *held.checkpoint().root();
    root[0] ^= 0xff;
    let signer = Ed25519Signer::new(&format!("{FED}/c0"), rig.log_key(0)).unwrap();
    let forged = Checkpoint::new(&format!("{FED}/c0"), held.checkpoint().size(), root)
        .unwrap()
        .sign(&signer)
        .unwrap()
        .to_bytes();
    (root, forged)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entry_reaches_every_log_and_a_stopped_log_catches_up() {
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let rig = Rig::new(11);
    let mut logs: Vec<Option<LogNode>> = Vec::new();
    for i in 0..LOGS.len() {
        logs.push(Some(rig.start_log(i).await));
    }
    let node_a = rig.start_node(0).await;
    let node_b = rig.start_node(1).await;

    // Documents A → B; B's node answers each with a signed 01, and B accepts (03).
    let mut docs = Vec::new();
    for n in 0..3 {
        let id = send(&node_a, &a, &b, &format!("Công văn số {n}")).await;
        docs.push(id);
    }
    eventually("B's 01 for every document is back at A", WAIT, || async {
        own_entries(&node_b, &b).len() == docs.len()
    })
    .await;
    for id in &docs {
        post(&node_b, &b, *id, StatusCode::Accepted).await;
    }
    eventually("every queue drained into all three logs", WAIT, || async {
        all_queues_empty(&[&node_a, &node_b]).await
    })
    .await;
    assert_eq!(own_entries(&node_a, &a).len(), 3);
    assert_eq!(own_entries(&node_b, &b).len(), 6, "01 and 03 per document");

    // Log c1 stops; more documents and statuses while it is down.
    logs[1].take().unwrap().shutdown().await;
    for n in 3..6 {
        let id = send(&node_a, &a, &b, &format!("Công văn số {n}")).await;
        docs.push(id);
    }
    eventually("B's 01s for the new documents", WAIT, || async {
        own_entries(&node_b, &b).len() == 3 + docs.len()
    })
    .await;
    for id in &docs[3..] {
        post(&node_b, &b, *id, StatusCode::Accepted).await;
    }
    eventually("the running logs have everything", WAIT, || async {
        for node in [&node_a, &node_b] {
            for log in ["c0", "c2"] {
                if queued(node, log).await > 0 {
                    return false;
                }
            }
        }
        true
    })
    .await;
    assert_eq!(
        queued(&node_a, "c1").await,
        3,
        "A's new documents wait for c1"
    );
    assert_eq!(
        queued(&node_b, "c1").await,
        6,
        "B's new statuses wait for c1"
    );
    assert!(
        node_a
            .ledger()
            .stats()
            .failed_rounds
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );

    // A restart of node A keeps its queue (it is durable).
    node_a.shutdown().await;
    let node_a = rig.start_node(0).await;
    assert_eq!(queued(&node_a, "c1").await, 3);

    // c1 comes back on the same data: the queues drain into it.
    logs[1] = Some(rig.start_log(1).await);
    eventually(
        "the queues for c1 drained after its restart",
        WAIT,
        || async { all_queues_empty(&[&node_a, &node_b]).await },
    )
    .await;

    // Every own envelope of both nodes is in every log, with a verified inclusion proof.
    let entries: BTreeSet<Vec<u8>> = own_entries(&node_a, &a)
        .into_iter()
        .chain(own_entries(&node_b, &b))
        .collect();
    assert_eq!(entries.len(), 6 + 12);
    for (i, log) in logs.iter().enumerate() {
        for entry in &entries {
            assert_in_log(&rig, i, entry).await;
        }
        assert_eq!(
            log.as_ref().unwrap().log().head().size,
            entries.len() as u64,
            "log {i} holds each entry once"
        );
    }
    // The client holds a verified checkpoint of each log covering everything.
    for log in LOGS {
        let cp = node_b.ledger().checkpoint(log).await.unwrap();
        assert!(cp.checkpoint().size() >= 9, "{log}: {}", cp.checkpoint());
    }
    assert!(node_a.ledger().alarms().await.unwrap().is_empty());
    assert!(node_b.ledger().alarms().await.unwrap().is_empty());

    node_a.shutdown().await;
    node_b.shutdown().await;
    for log in logs.into_iter().flatten() {
        log.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_checkpoint_on_gossip_raises_a_split_view_alarm() {
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let rig = Rig::new(12);
    let mut logs = Vec::new();
    for i in 0..LOGS.len() {
        logs.push(rig.start_log(i).await);
    }
    let (node_a, node_b, held) = one_document_everywhere(&rig, &logs[0], &a, &b).await;
    let size = held.checkpoint().size();
    assert!(size >= 2);

    // The log key of c0 signs a second tree of the same size: a split view.
    let (root, forged) = forge_same_size(&rig, &held);

    // B gossips it; A checks it and raises the alarm with both signed checkpoints.
    eventually("A raised a split-view alarm", WAIT, || async {
        let _ = node_b
            .net()
            .send(Command::Publish {
                topic: CHECKPOINTS_TOPIC.to_owned(),
                bytes: forged.clone(),
            })
            .await;
        !node_a.ledger().alarms().await.unwrap().is_empty()
    })
    .await;
    let alarms = node_a.ledger().alarms().await.unwrap();
    assert_eq!(alarms.len(), 1);
    let alarm = &alarms[0];
    assert_eq!(alarm.log, "c0");
    assert_eq!(alarm.source, "gossip");
    assert!(matches!(
        alarm.kind,
        AlarmKind::SplitView | AlarmKind::Inconsistent
    ));
    assert_eq!(alarm.conflicting.as_bytes(), forged.as_slice());
    let held_evidence =
        SignedCheckpoint::open(alarm.held.as_bytes(), &rig.log_verifier(0)).unwrap();
    assert_ne!(held_evidence.checkpoint().root(), &root);
    assert_eq!(
        node_a
            .ledger()
            .stats()
            .split_views
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The same evidence again is not a second alarm; B, handed it directly, alarms too.
    node_a.ledger().check_checkpoint(&forged, "gossip").await;
    assert_eq!(node_a.ledger().alarms().await.unwrap().len(), 1);
    node_b.ledger().check_checkpoint(&forged, "test").await;
    assert_eq!(node_b.ledger().alarms().await.unwrap().len(), 1);

    // A checkpoint signed by no roster key is ignored, garbage is rejected.
    use lienthong_protocol::relay::Verdict;
    let stranger = Ed25519Signer::new(
        &format!("{FED}/c0"),
        ed25519_dalek::SigningKey::from_bytes(&[99; 32]),
    )
    .unwrap();
    let unsigned = Checkpoint::new(&format!("{FED}/c0"), size, root)
        .unwrap()
        .sign(&stranger)
        .unwrap()
        .to_bytes();
    assert_eq!(
        node_a.ledger().check_checkpoint(&unsigned, "test").await,
        Verdict::Ignore
    );
    assert_eq!(
        node_a.ledger().check_checkpoint(b"garbage", "test").await,
        Verdict::Reject
    );

    node_a.shutdown().await;
    node_b.shutdown().await;
    for log in logs {
        log.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_removed_from_the_roster_is_declared_down_and_its_queue_dropped() {
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let rig = Rig::new(13);
    // c2 never comes up.
    let mut logs = Vec::new();
    for i in 0..2 {
        logs.push(rig.start_log(i).await);
    }
    let node_a = rig.start_node(0).await;
    let node_b = rig.start_node(1).await;
    send(&node_a, &a, &b, "Công văn").await;
    eventually(
        "c0 and c1 have everything; c2's queues wait",
        WAIT,
        || async {
            for node in [&node_a, &node_b] {
                if queued(node, "c0").await + queued(node, "c1").await > 0 {
                    return false;
                }
            }
            queued(&node_a, "c2").await == 1 && queued(&node_b, "c2").await == 1
        },
    )
    .await;

    // The central office removes c2 (k of n): both nodes drop its queue.
    let next = rig
        .fed
        .next_epoch(&rig.fed.roster, &[0, 1], |r| {
            r.central.retain(|c| c.name != "c2");
        })
        .unwrap();
    node_a.apply_roster(next).await.unwrap();
    eventually("c2's queues are dropped at both nodes", WAIT, || async {
        queued(&node_a, "c2").await == 0 && queued(&node_b, "c2").await == 0
    })
    .await;

    // New envelopes are no longer queued for it.
    send(&node_a, &a, &b, "Công văn 2").await;
    eventually(
        "the new document and its 01 are in c0 and c1",
        WAIT,
        || async {
            own_entries(&node_b, &b).len() == 2 && all_queues_empty(&[&node_a, &node_b]).await
        },
    )
    .await;

    node_a.shutdown().await;
    node_b.shutdown().await;
    for log in logs {
        log.shutdown().await;
    }
}

/// A proxy in front of a log that can serve a forged `/checkpoint`.
#[derive(Clone)]
struct Proxy {
    upstream: SocketAddr,
    client: reqwest::Client,
    forged: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

async fn proxy(
    axum::extract::State(p): axum::extract::State<Proxy>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if uri.path() == "/checkpoint"
        && let Some(forged) = p.forged.lock().unwrap().clone()
    {
        return forged.into_response();
    }
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let resp = p
        .client
        .request(method, format!("http://{}{path}", p.upstream))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.bytes().await.unwrap()).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_checkpoint_fetched_from_a_log_raises_an_alarm_and_keeps_the_queue() {
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let rig = Rig::new(14);
    // c0 runs behind a proxy on its listed port.
    let real = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p = Proxy {
        upstream: real.local_addr().unwrap(),
        client: reqwest::Client::new(),
        forged: Default::default(),
    };
    let app = axum::Router::new().fallback(proxy).with_state(p.clone());
    let front = TcpListener::bind(rig.http[0]).await.unwrap();
    let proxy_task = tokio::spawn(async move { axum::serve(front, app).await });
    let mut logs = vec![rig.start_log_on(0, real).await];
    for i in 1..LOGS.len() {
        logs.push(rig.start_log(i).await);
    }
    let (node_a, node_b, held) = one_document_everywhere(&rig, &logs[0], &a, &b).await;

    // c0 now shows A another tree of the size A holds.
    let (_, forged) = forge_same_size(&rig, &held);
    *p.forged.lock().unwrap() = Some(forged.clone());
    send(&node_a, &a, &b, "Công văn 2").await;
    eventually("A raised an alarm from what it fetched", WAIT, || async {
        node_a
            .ledger()
            .alarms()
            .await
            .unwrap()
            .iter()
            .any(|al| al.source == "fetch" && al.conflicting.as_bytes() == forged.as_slice())
    })
    .await;
    // Nothing is taken off c0's queue on the word of a log caught lying; the others drain.
    eventually("c1 and c2 have the new document", WAIT, || async {
        queued(&node_a, "c1").await + queued(&node_a, "c2").await == 0
    })
    .await;
    assert_eq!(queued(&node_a, "c0").await, 1);

    // The honest checkpoint again: the queue drains.
    *p.forged.lock().unwrap() = None;
    eventually(
        "c0's queue drains once its checkpoints are consistent again",
        WAIT,
        || async { all_queues_empty(&[&node_a, &node_b]).await },
    )
    .await;

    node_a.shutdown().await;
    node_b.shutdown().await;
    for log in logs {
        log.shutdown().await;
    }
    proxy_task.abort();
}
