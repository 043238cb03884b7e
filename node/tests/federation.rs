//! Whole agency nodes (store, relay driver, libp2p network, roster) in one process, over
//! real TCP on 127.0.0.1: delivery with statuses, store-and-forward through a central
//! custodian while sender and recipient are never online together, restarts mid-delivery,
//! and refusal of tampered, replayed, unknown and revoked senders.
//!
//! Nothing sleeps to synchronise: every wait is for an event or a condition re-checked
//! until it holds, under a timeout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::future::Future;
use std::time::Duration;

use lienthong_node::federation::{LocalFederation, NodeSpec};
use lienthong_node::node::Node;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::example_document;
use lienthong_protocol::envelope::{Kind, Routing};
use lienthong_protocol::relay::records::{self, StatusRecord, id_agency_key, split_agency_seq_key};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::{Content, StatusPost};
use lienthong_protocol::status::StatusCode;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tempfile::TempDir;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);
/// How often a condition on durable state is re-checked while waiting for it.
const RECHECK: Duration = Duration::from_millis(25);

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A generated federation and one data directory per node.
struct Fed {
    fed: LocalFederation,
    dirs: Vec<TempDir>,
}

impl Fed {
    /// `nodes`: (name, central, tenant codes).
    fn new(seed: u64, nodes: &[(&str, bool, &[&str])]) -> Self {
        let specs: Vec<NodeSpec> = nodes
            .iter()
            .map(|(name, central, tenants)| NodeSpec {
                name: (*name).into(),
                central: *central,
                tenants: tenants
                    .iter()
                    .map(|c| (agency(c), format!("Agency {c}")))
                    .collect(),
                port: free_port(),
            })
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let fed = LocalFederation::generate("test", &specs, 3, 2, &mut rng).unwrap();
        let dirs = nodes.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        Self { fed, dirs }
    }

    async fn start(&self, index: usize) -> Node {
        let setup = self.fed.setup(index, self.dirs[index].path()).unwrap();
        let node = Node::start(setup).await.unwrap();
        node.listen_addrs().await;
        node
    }
}

/// Waits until `check` holds, re-checking it every [`RECHECK`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    timeout(WAIT, async {
        while !check().await {
            tokio::time::sleep(RECHECK).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// The status codes `recipient` has reported on `id`, as the node holding the record sees
/// them.
fn statuses(node: &Node, id: ContentId, recipient: &AgencyId) -> Vec<StatusCode> {
    node.store()
        .get(Column::Statuses, &id_agency_key(&id, recipient))
        .unwrap()
        .map(|r| {
            let record: StatusRecord = records::decode(Column::Statuses, &r).unwrap();
            record.history.iter().map(|e| e.code).collect()
        })
        .unwrap_or_default()
}

/// How many times `id` sits in `tenant`'s inbox at `node`.
fn inbox_count(node: &Node, tenant: &AgencyId, id: ContentId) -> usize {
    node.store()
        .scan(Column::Inbox)
        .unwrap()
        .into_iter()
        .filter(|(k, v)| {
            split_agency_seq_key(k).is_some_and(|(t, _)| &t == tenant)
                && v.as_slice() == id.as_bytes()
        })
        .count()
}

async fn send(node: &Node, from: &AgencyId, to: &[AgencyId], subject: &str) -> ContentId {
    let document = example_document(from, to, subject);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_and_exchange_statuses() {
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let fed = Fed::new(
        1,
        &[
            ("ministry", false, &["000.00.00.G01"]),
            ("province", false, &["000.00.00.H41"]),
        ],
    );
    let node_a = fed.start(0).await;
    let node_b = fed.start(1).await;
    let mut inbox = node_b.driver().subscribe();

    let id = send(
        &node_a,
        &a,
        std::slice::from_ref(&b),
        "Về việc thử nghiệm liên thông",
    )
    .await;
    let delivered = timeout(WAIT, async {
        loop {
            let d = inbox.recv().await.unwrap();
            if d.id == id {
                return d;
            }
        }
    })
    .await
    .expect("the document reaches B's inbox");
    assert_eq!(delivered.tenant, b);
    assert_eq!(inbox_count(&node_b, &b, id), 1);

    // B's signed 01 comes back to A with the push's answer.
    eventually("A holds B's 01", || async {
        statuses(&node_a, id, &b) == [StatusCode::Arrived]
    })
    .await;

    // B accepts (03), assigns (04), and completes (06): A sees the chain in order.
    for code in [
        StatusCode::Accepted,
        StatusCode::Assigned,
        StatusCode::Processing,
        StatusCode::Completed,
    ] {
        post(&node_b, &b, id, code).await;
    }
    eventually("A holds B's whole status chain", || async {
        statuses(&node_a, id, &b).len() == 5
    })
    .await;
    assert_eq!(
        statuses(&node_a, id, &b),
        [
            StatusCode::Arrived,
            StatusCode::Accepted,
            StatusCode::Assigned,
            StatusCode::Processing,
            StatusCode::Completed
        ]
    );
    assert_eq!(node_a.driver().pending_deliveries().await.unwrap(), 0);
    node_a.shutdown().await;
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_receives_through_a_custodian_after_the_sender_left() {
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let fed = Fed::new(
        2,
        &[
            ("central-1", true, &[]),
            ("ministry", false, &["000.00.00.G01"]),
            ("province", false, &["000.00.00.H41"]),
        ],
    );
    let central = fed.start(0).await;
    let node_a = fed.start(1).await;

    // B's node is down: A hands the document to the central node after custody_after_ms.
    let id = send(
        &node_a,
        &a,
        std::slice::from_ref(&b),
        "Gửi khi bên nhận ngoại tuyến",
    )
    .await;
    eventually("the central node holds custody", || async {
        central.driver().pending_deliveries().await.unwrap() == 1
    })
    .await;
    node_a.shutdown().await;

    // B comes up with A gone: the custodian delivers.
    let node_b = fed.start(2).await;
    eventually("B's inbox holds the document", || async {
        inbox_count(&node_b, &b, id) == 1
    })
    .await;
    eventually("the custodian is done", || async {
        central.driver().pending_deliveries().await.unwrap() == 0
    })
    .await;

    // A comes back and learns of the 01 (B keeps its status until A confirms).
    let node_a = fed.start(1).await;
    eventually("A holds B's 01", || async {
        statuses(&node_a, id, &b).first() == Some(&StatusCode::Arrived)
    })
    .await;
    assert_eq!(inbox_count(&node_b, &b, id), 1);
    for node in [central, node_a, node_b] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_restarted_mid_delivery_gets_every_document_once() {
    const DOCUMENTS: usize = 40;
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let fed = Fed::new(
        3,
        &[
            ("ministry", false, &["000.00.00.G01"]),
            ("province", false, &["000.00.00.H41"]),
        ],
    );
    let node_a = fed.start(0).await;
    let node_b = fed.start(1).await;
    let mut inbox = node_b.driver().subscribe();

    let mut ids = Vec::with_capacity(DOCUMENTS);
    for i in 0..DOCUMENTS {
        ids.push(
            send(
                &node_a,
                &a,
                std::slice::from_ref(&b),
                &format!("Văn bản số {i}"),
            )
            .await,
        );
    }
    // Stop B as soon as some, not all, have arrived.
    timeout(WAIT, inbox.recv())
        .await
        .expect("a first delivery")
        .unwrap();
    node_b.shutdown().await;

    let node_b = fed.start(1).await;
    eventually("every document is in B's inbox", || async {
        ids.iter().all(|id| inbox_count(&node_b, &b, *id) >= 1)
    })
    .await;
    eventually("A's outbox is empty", || async {
        node_a.driver().pending_deliveries().await.unwrap() == 0
    })
    .await;
    for id in &ids {
        assert_eq!(inbox_count(&node_b, &b, *id), 1, "{id} delivered once");
    }
    let inbox_len = node_b.store().scan(Column::Inbox).unwrap().len();
    assert_eq!(inbox_len, DOCUMENTS, "nothing else in the inbox");
    node_a.shutdown().await;
    node_b.shutdown().await;
}
