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

mod common;

use common::eventually;

use std::time::Duration;

use lienthong_node::federation::{LocalFederation, NodeSpec, free_loopback_port};
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

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

/// A generated federation and one data directory per node.
struct Fed {
    fed: LocalFederation,
    dirs: Vec<TempDir>,
}

impl Fed {
    /// `nodes`: (name, central, tenant codes).
    fn new(seed: u64, nodes: &[(&str, bool, &[&str])]) -> Self {
        common::trace_to_test_output();
        let specs: Vec<NodeSpec> = nodes
            .iter()
            .map(|(name, central, tenants)| NodeSpec {
                name: (*name).into(),
                central: *central,
                tenants: tenants
                    .iter()
                    .map(|c| (agency(c), format!("Agency {c}")))
                    .collect(),
                port: free_loopback_port(),
                http_port: None,
                host: std::net::Ipv4Addr::LOCALHOST,
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
    eventually("A holds B's 01", WAIT, || async {
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
    eventually("A holds B's whole status chain", WAIT, || async {
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

    // The connected-peers gauge follows B going away.
    let connected = |node: &Node| {
        node.net()
            .metrics()
            .connected_peers
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(connected(&node_a), 1);
    node_b.shutdown().await;
    eventually("A sees B gone", WAIT, || async { connected(&node_a) == 0 }).await;
    node_a.shutdown().await;
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
    eventually("the central node holds custody", WAIT, || async {
        central.driver().pending_deliveries().await.unwrap() == 1
    })
    .await;
    node_a.shutdown().await;

    // B comes up with A gone: the custodian delivers.
    let node_b = fed.start(2).await;
    eventually("B's inbox holds the document", WAIT, || async {
        inbox_count(&node_b, &b, id) == 1
    })
    .await;
    eventually("the custodian is done", WAIT, || async {
        central.driver().pending_deliveries().await.unwrap() == 0
    })
    .await;

    // A comes back and learns of the 01 (B keeps its status until A confirms).
    let node_a = fed.start(1).await;
    eventually("A holds B's 01", WAIT, || async {
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
    eventually("every document is in B's inbox", WAIT, || async {
        ids.iter().all(|id| inbox_count(&node_b, &b, *id) >= 1)
    })
    .await;
    eventually("A's outbox is empty", WAIT, || async {
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

/// A bare network peer that speaks the relay protocol by hand, to send what no honest
/// node sends.
struct RawPeer {
    net: lienthong_node::net::NetHandle,
    events: tokio::sync::mpsc::Receiver<lienthong_node::net::NetEvent>,
}

impl RawPeer {
    async fn start(fed: &Fed, index: usize, target: &Node, target_index: usize) -> Self {
        use lienthong_node::net::{Command, NetConfig, NetEvent, Network};
        let generated = &fed.fed.nodes[index];
        let config = NetConfig {
            listen: vec![generated.addr.clone()],
            allowed: vec![target.peer_id()],
            ..NetConfig::default()
        };
        let keypair = generated.transport.clone();
        let store = std::sync::Arc::new(lienthong_node::net::MemoryPayloadStore::new());
        let (net, mut events, task) = Network::new(config, keypair, store).unwrap();
        tokio::spawn(task.run());
        net.send(Command::Dial {
            peer: target.peer_id(),
            addrs: vec![fed.fed.nodes[target_index].addr.clone()],
        })
        .await
        .unwrap();
        timeout(WAIT, async {
            loop {
                if let NetEvent::PeerConnected { peer } = events.recv().await.unwrap()
                    && peer == target.peer_id()
                {
                    return;
                }
            }
        })
        .await
        .expect("the raw peer connects");
        Self { net, events }
    }

    /// Pushes `envelope` and returns the receipts of the answer.
    async fn push(
        &mut self,
        to: &Node,
        envelope: Vec<u8>,
    ) -> Vec<lienthong_protocol::relay::wire::Receipt> {
        use lienthong_node::net::{Command, NetEvent};
        use lienthong_protocol::relay::wire::Wire;
        self.net
            .send(Command::Send {
                peer: to.peer_id(),
                wire: Wire::Push { envelope },
            })
            .await
            .unwrap();
        timeout(WAIT, async {
            loop {
                match self.events.recv().await.unwrap() {
                    NetEvent::Response {
                        wire: Wire::PushAck { receipts, .. },
                        ..
                    } => return receipts,
                    NetEvent::SendFailed { reason, .. } => {
                        panic!("the push got no answer: {reason}")
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("an answer to the push")
    }
}

/// A document envelope from `from` (signed with `key`) to `to`, sealed for `to`'s key.
fn forge(
    fed: &Fed,
    from: &AgencyId,
    key: &lienthong_protocol::keys::SigningKey,
    to: &AgencyId,
    seq: u64,
    prev: Option<ContentId>,
) -> lienthong_protocol::envelope::SignedEnvelope {
    use lienthong_protocol::envelope::{ENVELOPE_VERSION, EnvelopeBody, InlinePayload, Payload};
    use lienthong_protocol::seal::{self, SenderEpochs};
    let entry = fed.fed.roster.agency(to).unwrap();
    let document = example_document(from, std::slice::from_ref(to), "Văn bản giả mạo");
    let mut rng = ChaCha20Rng::seed_from_u64(seq);
    let now = lienthong_node::driver::now_ms();
    let sealed = seal::seal(
        &document.to_bytes().unwrap(),
        from,
        &[(to.clone(), entry.encryption_key)],
        &mut SenderEpochs::default(),
        now,
        &mut rng,
    )
    .unwrap();
    let inline = InlinePayload {
        manifest: sealed.manifest.as_bytes().to_vec(),
        chunk: sealed.chunks[0].clone(),
    };
    let body = EnvelopeBody {
        v: ENVELOPE_VERSION,
        kind: Kind::Document,
        from: from.clone(),
        to: vec![to.clone()],
        seq,
        prev,
        created_ms: now,
        routing: Routing::default(),
        payload: Payload::None,
    };
    lienthong_protocol::envelope::SignedEnvelope::sign_inline(body, &inline, key).unwrap()
}

fn arrived(receipts: &[lienthong_protocol::relay::wire::Receipt]) -> bool {
    matches!(
        receipts,
        [lienthong_protocol::relay::wire::Receipt::Arrived { .. }]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replayed_unknown_and_revoked_senders_are_refused_and_penalised() {
    use lienthong_protocol::keys::SigningKey;
    use lienthong_protocol::relay::wire::Receipt;
    use lienthong_protocol::roster::{AgencyState, RosterError};
    let (x, y, b) = (
        agency("000.00.00.G07"),
        agency("000.00.01.G07"),
        agency("000.00.00.H41"),
    );
    let fed = Fed::new(
        4,
        &[
            ("platform", false, &["000.00.00.G07", "000.00.01.G07"]),
            ("province", false, &["000.00.00.H41"]),
        ],
    );
    let node_b = fed.start(1).await;
    let mut rogue = RawPeer::start(&fed, 0, &node_b, 1).await;
    let seeds = fed.fed.tenant_signing_seeds();
    let x_key = SigningKey::from_seed(&seeds[&x]);
    let score = || async {
        node_b
            .net()
            .peer_score(fed.fed.nodes[0].peer_id)
            .await
            .unwrap()
            .unwrap_or(0.0)
    };

    // An honest envelope arrives; the same bytes again are a duplicate, not a second copy.
    let first = forge(&fed, &x, &x_key, &b, 1, None);
    let receipts = rogue.push(&node_b, first.bytes().to_vec()).await;
    assert!(arrived(&receipts), "{receipts:?}");
    let replay = rogue.push(&node_b, first.bytes().to_vec()).await;
    assert!(
        matches!(replay.as_slice(), [Receipt::Duplicate { .. }]),
        "{replay:?}"
    );
    assert_eq!(inbox_count(&node_b, &b, first.id()), 1);
    let score_before = score().await;

    // A flipped signature bit: refused, not delivered, and the peer pays for it.
    let second = forge(&fed, &x, &x_key, &b, 2, Some(first.id()));
    let mut tampered = second.bytes().to_vec();
    let sig = second.signature().0;
    let at = tampered
        .windows(64)
        .position(|w| w == sig)
        .expect("the signature is in the bytes");
    tampered[at] ^= 0x01;
    let receipts = rogue.push(&node_b, tampered).await;
    assert!(
        matches!(receipts.as_slice(), [Receipt::Refused { .. }]),
        "{receipts:?}"
    );
    assert_eq!(inbox_count(&node_b, &b, second.id()), 0);
    eventually("the tampering peer's score drops", WAIT, || async {
        score().await < score_before
    })
    .await;

    // An agency the roster does not know.
    let stranger = agency("000.00.09.G07");
    let stranger_key = SigningKey::from_seed(&[42; 32]);
    let unknown = forge(&fed, &stranger, &stranger_key, &b, 1, None);
    let receipts = rogue.push(&node_b, unknown.bytes().to_vec()).await;
    assert!(
        matches!(receipts.as_slice(), [Receipt::Refused { .. }]),
        "{receipts:?}"
    );
    assert_eq!(inbox_count(&node_b, &b, unknown.id()), 0);

    // A revocation signed by fewer than k root keys is refused …
    let revoke = |r: &mut lienthong_protocol::roster::Roster| {
        for a in &mut r.agencies {
            if a.id == x {
                a.state = AgencyState::Revoked;
            }
        }
    };
    let weak = fed.fed.next_epoch(&fed.fed.roster, &[2], revoke).unwrap();
    let refused = node_b.apply_roster(weak).await;
    assert!(
        matches!(
            refused,
            Err(lienthong_node::node::NodeError::Roster(
                RosterError::Threshold { .. }
            ))
        ),
        "{refused:?}"
    );
    // … the honest sender still gets through …
    assert!(arrived(&rogue.push(&node_b, second.bytes().to_vec()).await));
    // … and one signed by k of n takes effect: X's next envelope is refused, Y (same
    // node) still delivers.
    let strong = fed
        .fed
        .next_epoch(&fed.fed.roster, &[1, 2], revoke)
        .unwrap();
    assert_eq!(node_b.apply_roster(strong).await.unwrap(), 2);
    assert_eq!(node_b.roster().borrow().epoch, 2);
    let third = forge(&fed, &x, &x_key, &b, 3, Some(second.id()));
    let receipts = rogue.push(&node_b, third.bytes().to_vec()).await;
    assert!(
        matches!(receipts.as_slice(), [Receipt::Refused { .. }]),
        "{receipts:?}"
    );
    assert_eq!(inbox_count(&node_b, &b, third.id()), 0);
    let y_key = SigningKey::from_seed(&seeds[&y]);
    let from_y = forge(&fed, &y, &y_key, &b, 1, None);
    assert!(arrived(&rogue.push(&node_b, from_y.bytes().to_vec()).await));

    // The epoch is durable: a restart comes back on it.
    node_b.shutdown().await;
    let node_b = fed.start(1).await;
    assert_eq!(node_b.roster().borrow().epoch, 2);
    node_b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_node_directory_loads_validates_and_starts() {
    use lienthong_node::config::{Config, Overrides};
    let fed = Fed::new(5, &[("province", false, &["000.00.00.H41"])]);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let files = fed
        .fed
        .write_node(0, dir.path(), free_loopback_port(), &mut rng)
        .unwrap();
    assert_eq!(files.tokens.len(), 1);

    // Keys are private to the operator.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("keys/transport.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A bad override is named with the expected form.
    let err = Config::load(
        &files.config,
        Overrides {
            api_listen: Some("localhost".into()),
            ..Overrides::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("api.listen") && err.contains("127.0.0.1:8080"),
        "{err}"
    );
    let err = Config::load(
        &files.config,
        Overrides {
            listen: Some(vec!["tcp/4001".into()]),
            ..Overrides::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("network.listen[0]"), "{err}");

    // The written configuration starts the node, with the roster's peer id and tenant.
    let config = Config::load(&files.config, Overrides::default()).unwrap();
    assert_eq!(config.tokens.len(), 1);
    let node = Node::start(config.setup).await.unwrap();
    assert_eq!(node.peer_id(), fed.fed.nodes[0].peer_id);
    assert_eq!(node.tenants()[0].id, agency("000.00.00.H41"));
    node.shutdown().await;

    // Another node's transport key does not host this tenant: refused with the reason.
    let other = Fed::new(6, &[("province", false, &["000.00.00.H41"])]);
    let other_dir = tempfile::tempdir().unwrap();
    other
        .fed
        .write_node(0, other_dir.path(), free_loopback_port(), &mut rng)
        .unwrap();
    std::fs::copy(
        other_dir.path().join("keys/transport.key"),
        dir.path().join("keys/other-transport.key"),
    )
    .unwrap();
    let text = std::fs::read_to_string(&files.config)
        .unwrap()
        .replace("keys/transport.key", "keys/other-transport.key");
    std::fs::write(&files.config, text).unwrap();
    let config = Config::load(&files.config, Overrides::default()).unwrap();
    let err = Node::start(config.setup).await.unwrap_err().to_string();
    assert!(err.contains("is hosted on node"), "{err}");
}
