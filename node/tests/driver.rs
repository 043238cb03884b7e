//! The relay driver over a real RocksDB store: co-hosted delivery with its 01, pending
//! deliveries resumed after a restart, and exactly-once inboxes across restarts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use lienthong_node::driver::{DriverConfig, DriverHandle, Outbound};
use lienthong_node::send::SendPath;
use lienthong_node::store::Store;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::document::example_document;
use lienthong_protocol::envelope::{Kind, Routing};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::records::{self, StatusRecord, id_agency_key, split_agency_seq_key};
use lienthong_protocol::relay::store::Column;
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::relay::{RelayConfig, Tenant};
use lienthong_protocol::roster::{AgencyEntry, AgencyState, Federation, Roster};
use lienthong_protocol::status::StatusCode;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

struct Federation3 {
    roster: Arc<Roster>,
    seeds: Vec<(AgencyId, [u8; 32])>,
}

/// A (000.00.00.H41) and B (000.00.01.H41) on node-a; C (000.00.00.H44) on node-c.
fn federation() -> Federation3 {
    let members = [
        ("000.00.00.H41", "node-a"),
        ("000.00.01.H41", "node-a"),
        ("000.00.00.H44", "node-c"),
    ];
    let mut seeds = Vec::new();
    let mut agencies = Vec::new();
    for (i, (code, node)) in members.iter().enumerate() {
        let id = agency(code);
        let seed = [i as u8 + 1; 32];
        agencies.push(AgencyEntry {
            level: id.level().unwrap(),
            parent: id.parent(),
            id: id.clone(),
            name: format!("Agency {code}"),
            signing_key: SigningKey::from_seed(&seed).verifying_key(),
            encryption_key: EncryptionSecret::from_bytes(&seed).public_key(),
            node: (*node).into(),
            addrs: vec![],
            state: AgencyState::Active,
        });
        seeds.push((id, seed));
    }
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
    Federation3 {
        roster: Arc::new(roster),
        seeds,
    }
}

fn start(fed: &Federation3, store: &Store) -> (DriverHandle, mpsc::Receiver<Outbound>) {
    let tenants = fed
        .seeds
        .iter()
        .take(2)
        .map(|(id, seed)| Tenant {
            id: id.clone(),
            key: SigningKey::from_seed(seed),
        })
        .collect();
    let config = DriverConfig {
        relay: RelayConfig::new("node-a"),
        roster: Arc::clone(&fed.roster),
        tenants,
    };
    DriverHandle::start(config, store.clone()).unwrap()
}

/// Waits for a push of `id` to `peer` on the outbound channel.
async fn push_to(outbound: &mut mpsc::Receiver<Outbound>, peer: &str, id: ContentId) {
    timeout(WAIT, async {
        loop {
            match outbound.recv().await.expect("driver running") {
                Outbound::Send {
                    peer: p,
                    wire: Wire::Push { envelope },
                } if p == peer => {
                    let env =
                        lienthong_protocol::envelope::SignedEnvelope::decode(&envelope).unwrap();
                    if env.id() == id {
                        return;
                    }
                }
                _ => {}
            }
        }
    })
    .await
    .expect("a push to the offline recipient's node");
}

/// Waits until the driver holds exactly `n` pending deliveries.
async fn wait_pending(driver: &DriverHandle, n: usize) {
    timeout(WAIT, async {
        while driver.pending_deliveries().await.unwrap() != n {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pending deliveries never reached {n}"));
}

fn inbox_entries(store: &Store, tenant: &AgencyId, id: ContentId) -> usize {
    store
        .scan(Column::Inbox)
        .unwrap()
        .into_iter()
        .filter(|(k, v)| {
            split_agency_seq_key(k).is_some_and(|(t, _)| &t == tenant)
                && v.as_slice() == id.as_bytes()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_locally_and_resumes_pending_deliveries_after_restart() {
    let fed = federation();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (a, b, c) = (
        fed.seeds[0].0.clone(),
        fed.seeds[1].0.clone(),
        fed.seeds[2].0.clone(),
    );

    let (driver, mut outbound) = start(&fed, &store);
    let mut inbox = driver.subscribe();
    let send = SendPath::new(driver.clone(), store.clone(), Arc::clone(&fed.roster));
    let document = example_document(&a, &[b.clone(), c.clone()], "Về việc thử nghiệm");
    let id = send
        .send_document(&a, Kind::Document, Routing::default(), &document)
        .await
        .unwrap();

    // B (same node) gets it at once, exactly once; its signed 01 comes back to A.
    let delivered = timeout(WAIT, async {
        loop {
            let d = inbox.recv().await.unwrap();
            if d.tenant == b && d.id == id {
                return d;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(delivered.position, 0);
    timeout(WAIT, async {
        loop {
            let record = store
                .get(Column::Statuses, &id_agency_key(&id, &b))
                .unwrap();
            let record: Option<StatusRecord> =
                record.map(|r| records::decode(Column::Statuses, &r).unwrap());
            if record.is_some_and(|r| r.history.iter().any(|e| e.code == StatusCode::Arrived)) {
                return;
            }
            inbox.recv().await.unwrap();
        }
    })
    .await
    .expect("the 01 from B reaches A's record");

    // C's node is offline: the delivery stays pending and is pushed.
    push_to(&mut outbound, "node-c", id).await;
    wait_pending(&driver, 1).await;
    driver.shutdown().await;
    drop(send);
    drop(driver);

    // Restart: the pending delivery resumes from the store and is pushed again at once.
    let (driver, mut outbound) = start(&fed, &store);
    assert_eq!(driver.pending_deliveries().await.unwrap(), 1);
    push_to(&mut outbound, "node-c", id).await;
    assert_eq!(
        inbox_entries(&store, &b, id),
        1,
        "delivered exactly once across the restart"
    );
    driver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_unknown_recipients_and_non_tenants_with_reasons() {
    let fed = federation();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (driver, _outbound) = start(&fed, &store);
    let send = SendPath::new(driver.clone(), store.clone(), Arc::clone(&fed.roster));
    let a = fed.seeds[0].0.clone();
    let unknown = agency("000.00.00.H99");
    let err = send
        .send_bytes(&a, Kind::Document, vec![unknown], Routing::default(), b"x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("000.00.00.H99"), "{err}");
    // C is in the roster but not hosted here: this node cannot sign for it.
    let c = fed.seeds[2].0.clone();
    let err = send
        .send_bytes(&c, Kind::Document, vec![a], Routing::default(), b"x")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not hosted"), "{err}");
    assert_eq!(
        driver.pending_deliveries().await.unwrap(),
        0,
        "nothing half-stored"
    );
    driver.shutdown().await;
}
