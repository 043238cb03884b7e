//! The central node's ledger, end to end in one process: durable concurrent appends across a
//! restart, checkpoints and tiles verified as a client would, three nodes witnessing each
//! other (with one stopped and restarted), and a forked log caught by its witnesses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lienthong_bootstrap::config::Config;
use lienthong_bootstrap::http::AddResponse;
use lienthong_bootstrap::log::{Log, LogConfig};
use lienthong_bootstrap::node::Node;
use lienthong_bootstrap::store::Store;
use lienthong_bootstrap::witness::{Alarm, AlarmKind};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::envelope::{
    ENVELOPE_VERSION, EnvelopeBody, Kind, Payload, Routing, SignedEnvelope,
};
use lienthong_protocol::keys::SigningKey;
use lienthong_protocol::ledger::{LedgerEntry, RosterRef};
use lienthong_protocol::rfc6962::{self, Hash, MemoryTree, leaf_hash};
use lienthong_protocol::signed_note::{Ed25519Signer, Ed25519Verifier};
use lienthong_protocol::tlog_checkpoint::{Checkpoint, SignedCheckpoint};
use lienthong_protocol::tlog_cosignature::{CosignerKey, count_cosignatures};
use lienthong_protocol::tlog_tiles::{TileHashSource, TileId, new_tiles, parse_entry_bundle};
use tokio::net::TcpListener;

const FED: &str = "lienthong-test";
const WAIT: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds or `timeout` passes (then panics naming `what`).
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A real envelope header entry: agency `sender`'s envelope number `seq`.
fn envelope_entry(sender: u8, seq: u64) -> Vec<u8> {
    let key = SigningKey::from_seed(&[sender; 32]);
    let body = EnvelopeBody {
        v: ENVELOPE_VERSION,
        kind: Kind::Document,
        from: AgencyId::parse(&format!("000.00.00.G{:02}", sender % 100)).unwrap(),
        to: vec![AgencyId::parse("000.00.00.H41").unwrap()],
        seq,
        // Not a real chain (the auditor checks those), but the shape a header must have.
        prev: (seq > 1).then(|| ContentId::of(&(seq - 1).to_be_bytes())),
        created_ms: 1_700_000_000_000 + seq,
        routing: Routing::default(),
        payload: Payload::External {
            manifest: [sender; 32],
            size: 4096,
        },
    };
    let env = SignedEnvelope::sign(body, &key).unwrap();
    LedgerEntry::envelope(&env).unwrap().to_bytes()
}

/// A cheap valid entry (a roster reference), unique per `n`.
fn roster_entry(n: u64) -> Vec<u8> {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&n.to_be_bytes());
    LedgerEntry::Roster(RosterRef {
        epoch: n,
        digest,
        sigs: vec![],
    })
    .to_bytes()
}

fn dalek(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

fn fast(mut c: Config) -> Config {
    c.checkpoint_interval = Duration::from_millis(50);
    c.witness_interval = Duration::from_millis(50);
    c.request_timeout = Duration::from_secs(2);
    c
}

/// Keys of central node `i`: log key seed `10 + i`, witness key seed `20 + i`.
fn config(i: u8, dir: &Path) -> Config {
    fast(
        Config::new(
            FED,
            &format!("c{i}"),
            dir.join(format!("c{i}")),
            dalek(10 + i),
            dalek(20 + i),
        )
        .unwrap(),
    )
}

fn log_verifier(i: u8) -> Ed25519Verifier {
    Ed25519Signer::new(&format!("{FED}/c{i}"), dalek(10 + i))
        .unwrap()
        .verifier()
}

fn witness_key(i: u8) -> CosignerKey {
    CosignerKey::new(
        &format!("{FED}/c{i}/witness"),
        dalek(20 + i).verifying_key(),
    )
    .unwrap()
}

fn peer(c: &mut Config, i: u8, addr: SocketAddr) {
    c.add_peer(
        &format!("c{i}"),
        &format!("http://{addr}/"),
        &log_verifier(i).to_vkey(),
        &witness_key(i).to_vkey(),
    )
    .unwrap();
}

async fn get(client: &reqwest::Client, url: String) -> reqwest::Response {
    client.get(url).send().await.unwrap()
}

async fn checkpoint_of(client: &reqwest::Client, addr: SocketAddr) -> SignedCheckpoint {
    let b = get(client, format!("http://{addr}/checkpoint"))
        .await
        .bytes()
        .await
        .unwrap();
    SignedCheckpoint::parse(&b).unwrap()
}

fn hashes(v: &[String]) -> Vec<Hash> {
    v.iter()
        .map(|s| B64.decode(s).unwrap().try_into().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_durable_deduplicated_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        queue_capacity: 64,
        max_group: 256,
    };
    let store = Store::open(dir.path()).unwrap();
    let log = Arc::new(Log::open(store, config).unwrap());

    // 64 submitters, 40 entries each, through a queue of 64: backpressure and group commit.
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for j in 0..40u64 {
                let e = if j % 4 == 0 {
                    envelope_entry((t % 50) as u8 + 1, t * 1000 + j + 1)
                } else {
                    roster_entry(t * 1000 + j)
                };
                let r = log.append(e.clone()).await.unwrap();
                assert!(!r.duplicate);
                got.push((e, r.index));
            }
            got
        }));
    }
    let mut acked: Vec<(Vec<u8>, u64)> = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let n = acked.len() as u64;
    assert_eq!(n, 64 * 40);
    let indices: HashSet<u64> = acked.iter().map(|(_, i)| *i).collect();
    assert_eq!(indices, (0..n).collect(), "every index assigned once");
    assert_eq!(log.head().size, n);
    let stats = log.stats();
    assert!(stats.groups < n, "appends shared fsyncs: {stats:?}");

    // Duplicates, alone and concurrently with themselves: the same index, nothing appended.
    let mut dups = Vec::new();
    for (e, i) in acked.iter().step_by(97) {
        for _ in 0..2 {
            let (log, e, i) = (Arc::clone(&log), e.clone(), *i);
            dups.push(tokio::spawn(async move {
                let r = log.append(e).await.unwrap();
                assert_eq!((r.index, r.duplicate), (i, true));
            }));
        }
    }
    for d in dups {
        d.await.unwrap();
    }
    let fresh = roster_entry(999_999_999);
    let (a, b) = tokio::join!(log.append(fresh.clone()), log.append(fresh.clone()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.index, b.index);
    assert!(
        a.duplicate != b.duplicate,
        "exactly one of the two appended"
    );
    assert_eq!(log.head().size, n + 1);
    acked.push((fresh, a.index));

    // Invalid entries are refused before they reach the queue.
    assert!(log.append(vec![]).await.is_err());
    assert!(log.append(vec![0x82, 0x01]).await.is_err());
    assert!(log.append(vec![0xa1; 70_000]).await.is_err());

    let root = log.head().root;
    log.close().await;
    drop(log);

    // Reopen: every acknowledged entry at its index, same root, dedupe index intact.
    let store = Store::open(dir.path()).unwrap();
    let log = Log::open(store, config).unwrap();
    assert_eq!(log.head().size, n + 1);
    assert_eq!(log.head().root, root);
    let tree = {
        let mut all = vec![Vec::new(); (n + 1) as usize];
        for (e, i) in &acked {
            all[*i as usize] = e.clone();
        }
        MemoryTree::from_entries(&all)
    };
    assert_eq!(tree.root(), root);
    for (e, i) in &acked {
        assert_eq!(log.entry(*i).unwrap().as_deref(), Some(e.as_slice()));
        let key = LedgerEntry::decode(e).unwrap().key();
        assert_eq!(log.find(key.as_bytes()).unwrap(), Some(*i));
    }
    let again = log.append(acked[5].0.clone()).await.unwrap();
    assert_eq!((again.index, again.duplicate), (acked[5].1, true));
    let next = log.append(roster_entry(123_456_789)).await.unwrap();
    assert_eq!((next.index, next.duplicate), (n + 1, false));
    // Proofs from the stored tiles match the reference tree.
    for (index, size) in [(0, n + 1), (n - 3, n), (255, 256), (256, n + 1)] {
        assert_eq!(
            log.inclusion_proof(index, size).unwrap(),
            tree.inclusion_proof(index, size).unwrap()
        );
    }
    assert_eq!(
        log.consistency_proof(300, n + 1).unwrap(),
        tree.consistency_proof(300, n + 1).unwrap()
    );
    assert!(log.inclusion_proof(0, n + 10).is_err(), "beyond the tree");
    log.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_tiles_and_proofs_verify_for_a_client() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(0, dir.path())).await.unwrap();
    let addr = node.local_addr();
    let client = reqwest::Client::new();
    let verifier = log_verifier(0);

    // The empty log has a checkpoint at once.
    let cp0 = checkpoint_of(&client, addr).await;
    cp0.verify(&[&verifier]).unwrap();
    assert_eq!(cp0.checkpoint().size(), 0);
    assert_eq!(cp0.checkpoint().origin(), format!("{FED}/c0"));

    // Submissions over HTTP, concurrently: each answer carries a checkpoint and a proof.
    let entries: Vec<Vec<u8>> = (0..700u64)
        .map(|i| {
            if i % 7 == 0 {
                envelope_entry(3, i + 1)
            } else {
                roster_entry(i)
            }
        })
        .collect();
    let mut tasks = Vec::new();
    for chunk in entries.chunks(50) {
        let chunk = chunk.to_vec();
        let (client, verifier) = (client.clone(), verifier.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for e in chunk {
                let r = client
                    .post(format!("http://{addr}/add"))
                    .body(e.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                let a: AddResponse = r.json().await.unwrap();
                let cp =
                    SignedCheckpoint::open(a.checkpoint.unwrap().as_bytes(), &verifier).unwrap();
                let c = cp.checkpoint();
                assert!(c.size() > a.index);
                rfc6962::verify_inclusion(
                    a.index,
                    c.size(),
                    &leaf_hash(&e),
                    &hashes(&a.proof.unwrap()),
                    c.root(),
                )
                .unwrap();
                out.push((e, a.index));
            }
            out
        }));
    }
    let mut index_of = HashMap::new();
    for t in tasks {
        for (e, i) in t.await.unwrap() {
            index_of.insert(i, e);
        }
    }
    assert_eq!(index_of.len(), 700);

    // A resubmission answers the same index.
    let r: AddResponse = client
        .post(format!("http://{addr}/add?wait=false"))
        .body(entries[10].clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r.duplicate && index_of[&r.index] == entries[10]);
    assert!(r.proof.is_none());

    eventually("a checkpoint of all 700 entries", WAIT, || async {
        checkpoint_of(&client, addr).await.checkpoint().size() == 700
    })
    .await;
    let cp = checkpoint_of(&client, addr).await;
    cp.verify(&[&verifier]).unwrap();
    let size = cp.checkpoint().size();

    // Fetch every tile of the tree, as a mirror would, and recompute the root.
    let mut tiles: HashMap<TileId, Vec<u8>> = HashMap::new();
    for t in new_tiles(0, size, false) {
        let r = get(&client, format!("http://{addr}/{}", t.path())).await;
        assert_eq!(r.status(), StatusCode::OK, "{t}");
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        tiles.insert(t, r.bytes().await.unwrap().to_vec());
    }
    let src = TileHashSource::new(&tiles, size);
    assert_eq!(&rfc6962::root(&src, size).unwrap(), cp.checkpoint().root());

    // Entry bundles hold the entries in order, and hash to the level-0 tiles.
    let mut leaves = Vec::new();
    for t in new_tiles(0, size, true) {
        let data = get(&client, format!("http://{addr}/{}", t.path()))
            .await
            .bytes()
            .await
            .unwrap();
        for (k, e) in parse_entry_bundle(&data).unwrap().into_iter().enumerate() {
            let i = t.index * 256 + k as u64;
            assert_eq!(e, index_of[&i].as_slice());
            leaves.push(leaf_hash(e));
        }
    }
    assert_eq!(leaves.len() as u64, size);
    let mut b = rfc6962::TreeBuilder::new();
    for l in &leaves {
        b.push_leaf_hash(*l);
    }
    assert_eq!(&b.root(), cp.checkpoint().root());

    // Proof endpoints agree with proofs computed from the tiles.
    for index in [0u64, 255, 256, 511, 699] {
        let body: serde_json::Value = get(
            &client,
            format!("http://{addr}/proof/inclusion?index={index}&size={size}"),
        )
        .await
        .json()
        .await
        .unwrap();
        let proof: Vec<String> = serde_json::from_value(body["proof"].clone()).unwrap();
        let proof = hashes(&proof);
        assert_eq!(proof, rfc6962::inclusion_proof(&src, index, size).unwrap());
        rfc6962::verify_inclusion(index, size, &leaves[index as usize], &proof, &b.root()).unwrap();
    }
    let body: serde_json::Value = get(
        &client,
        format!("http://{addr}/proof/consistency?old=300&new={size}"),
    )
    .await
    .json()
    .await
    .unwrap();
    let proof: Vec<String> = serde_json::from_value(body["proof"].clone()).unwrap();
    rfc6962::verify_consistency(
        300,
        size,
        &rfc6962::root(&src, 300).unwrap(),
        &b.root(),
        &hashes(&proof),
    )
    .unwrap();

    // Errors are problem details; oversize bodies are refused before they are read.
    let r = client
        .post(format!("http://{addr}/add"))
        .body(vec![0x82, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["status"], 400);
    assert_eq!(p["type"], "urn:lienthong:problem:invalid-entry");
    assert!(p["title"].is_string() && p["detail"].is_string());
    let r = client
        .post(format!("http://{addr}/add"))
        .body(vec![0u8; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    for path in [
        "tile/0/005",
        "tile/0/002.p/255",
        "tile/entries/003",
        "tile/0/01",
        "nothing",
    ] {
        let r = get(&client, format!("http://{addr}/{path}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = get(
        &client,
        format!("http://{addr}/proof/inclusion?index=1&size=100000"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_rosters_are_stored_logged_and_served() {
    use lienthong_protocol::roster::{Federation, Roster, SignedRoster};
    use sha2::Digest as _;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(0, dir.path())).await.unwrap();
    let addr = node.local_addr();
    let client = reqwest::Client::new();
    let root = SigningKey::from_seed(&[42; 32]);
    let roster = Roster {
        epoch: 7,
        issued_ms: 1_700_000_000_000,
        federation: Federation {
            name: FED.into(),
            threshold: 1,
            root_keys: vec![root.verifying_key()],
            witness_quorum: 0,
        },
        agencies: vec![],
        central: vec![],
    };
    let mut signed = SignedRoster::propose(&roster).unwrap();
    signed.sign(&root);
    let bytes = signed.to_bytes().unwrap();
    let post = || {
        client
            .post(format!("http://{addr}/roster?wait=false"))
            .body(bytes.clone())
            .send()
    };
    let a: AddResponse = post().await.unwrap().json().await.unwrap();
    assert!(!a.duplicate);
    let again: AddResponse = post().await.unwrap().json().await.unwrap();
    assert_eq!((again.index, again.duplicate), (a.index, true));
    let served = get(&client, format!("http://{addr}/roster/7")).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let entry = node.log().entry(a.index).unwrap().unwrap();
    let LedgerEntry::Roster(r) = LedgerEntry::decode(&entry).unwrap() else {
        panic!("not a roster entry");
    };
    assert_eq!(r.epoch, 7);
    assert_eq!(
        r.digest,
        <[u8; 32]>::from(sha2::Sha256::digest(&signed.roster))
    );
    let missing = get(&client, format!("http://{addr}/roster/8")).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let bad = client
        .post(format!("http://{addr}/roster"))
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    node.shutdown().await;
}

async fn start(i: u8, dir: &Path, addrs: &[SocketAddr], listener: TcpListener) -> Node {
    let mut c = config(i, dir);
    for (j, a) in addrs.iter().enumerate() {
        if j != usize::from(i) {
            peer(&mut c, j as u8, *a);
        }
    }
    Node::start_on(c, listener).await.unwrap()
}

/// Whether node `i`'s checkpoint at `addr` has `size` and is cosigned by exactly `by`.
async fn cosigned(client: &reqwest::Client, addr: SocketAddr, i: u8, size: u64, by: &[u8]) -> bool {
    let cp = checkpoint_of(client, addr).await;
    if cp.checkpoint().size() != size || cp.verify(&[&log_verifier(i)]).is_err() {
        return false;
    }
    let keys: Vec<CosignerKey> = (0..3).map(witness_key).collect();
    let q = count_cosignatures(cp.note(), &keys).unwrap();
    let mut got: Vec<u8> = q.cosigned_by.iter().map(|(k, _)| *k as u8).collect();
    got.sort_unstable();
    got == by
}

async fn append_to(client: &reqwest::Client, addr: SocketAddr, from: u64, to: u64) {
    for n in from..to {
        let r = client
            .post(format!("http://{addr}/add?wait=false"))
            .body(roster_entry(n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_cosign_each_other_and_a_restarted_one_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(Some(start(i as u8, dir.path(), &addrs, l).await));
    }
    let client = reqwest::Client::new();
    let others = |i: u8| -> Vec<u8> { (0..3).filter(|j| *j != i).collect() };

    // Round 1: entries in every log; every latest checkpoint ends up cosigned by the other two.
    for a in &addrs {
        append_to(&client, *a, 0, 100).await;
    }
    for i in 0..3u8 {
        let by = others(i);
        eventually(&format!("c{i} at 100 cosigned by the others"), WAIT, || {
            cosigned(&client, addrs[i as usize], i, 100, &by)
        })
        .await;
    }

    // Stop c1; the others keep logging and cosigning each other.
    nodes[1].take().unwrap().shutdown().await;
    for i in [0usize, 2] {
        append_to(&client, addrs[i], 100, 200).await;
    }
    for i in [0u8, 2] {
        let by: Vec<u8> = [0u8, 2].into_iter().filter(|j| *j != i).collect();
        eventually(
            &format!("c{i} at 200 cosigned by the live one"),
            WAIT,
            || cosigned(&client, addrs[i as usize], i, 200, &by),
        )
        .await;
    }

    // Restart c1 on the same address and data: it catches up cosigning, and is cosigned.
    let l = TcpListener::bind(addrs[1]).await.unwrap();
    nodes[1] = Some(start(1, dir.path(), &addrs, l).await);
    assert_eq!(nodes[1].as_ref().unwrap().log().head().size, 100);
    append_to(&client, addrs[1], 100, 200).await;
    for i in 0..3u8 {
        let by = others(i);
        eventually(
            &format!("c{i} at 200 cosigned by the other two"),
            WAIT,
            || cosigned(&client, addrs[i as usize], i, 200, &by),
        )
        .await;
    }
    for n in nodes.iter().flatten() {
        assert!(n.witness().alarms(10).unwrap().is_empty());
    }
    for n in nodes.into_iter().flatten() {
        n.shutdown().await;
    }
}

/// What the test proxy in front of a log does.
#[derive(Default)]
struct Fork {
    /// Served instead of the real `/checkpoint`, with the tree it was made from.
    checkpoint: Option<(Vec<u8>, MemoryTree)>,
}

struct Proxy {
    target: SocketAddr,
    client: reqwest::Client,
    fork: Mutex<Fork>,
}

async fn proxy(State(p): State<Arc<Proxy>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let forged = {
        let f = p.fork.lock().unwrap();
        match (&f.checkpoint, uri.path()) {
            (Some((cp, _)), "/checkpoint") => Some(cp.clone().into_response()),
            (Some((_, tree)), "/proof/consistency") => {
                let q: HashMap<String, u64> =
                    serde_urlencoded_pairs(uri.query().unwrap_or_default());
                let proof = tree.consistency_proof(q["old"], q["new"]).unwrap();
                let proof: Vec<String> = proof.iter().map(|h| B64.encode(h)).collect();
                Some(
                    axum::Json(
                        serde_json::json!({"old": q["old"], "new": q["new"], "proof": proof}),
                    )
                    .into_response(),
                )
            }
            _ => None,
        }
    };
    if let Some(r) = forged {
        return r;
    }
    let url = format!(
        "http://{}{}",
        p.target,
        uri.path_and_query().map_or("/", |x| x.as_str())
    );
    let r = p
        .client
        .request(method, url)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.bytes().await.unwrap()).into_response()
}

fn serde_urlencoded_pairs(q: &str) -> HashMap<String, u64> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forked_log_gets_no_cosignature_and_raises_alarms_with_evidence() {
    let dir = tempfile::tempdir().unwrap();
    // c0 and c1 witness c2 through a proxy that can fork c2's log.
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let proxy_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let real: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let seen = vec![real[0], real[1], proxy_listener.local_addr().unwrap()];
    let p = Arc::new(Proxy {
        target: real[2],
        client: reqwest::Client::new(),
        fork: Mutex::new(Fork::default()),
    });
    let app = axum::Router::new()
        .fallback(proxy)
        .with_state(Arc::clone(&p));
    let proxy_task = tokio::spawn(async move { axum::serve(proxy_listener, app).await });
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(start(i as u8, dir.path(), &seen, l).await);
    }
    let client = reqwest::Client::new();

    // Honest history: c2 at 40 entries, cosigned by c0 and c1.
    let entries: Vec<Vec<u8>> = (0..40).map(roster_entry).collect();
    append_to(&client, real[2], 0, 40).await;
    eventually("c2 at 40 cosigned by c0 and c1", WAIT, || {
        cosigned(&client, real[2], 2, 40, &[0, 1])
    })
    .await;
    let origin = format!("{FED}/c2");
    let honest = nodes[0].witness().last_cosigned(&origin).unwrap();
    assert_eq!(honest.checkpoint().size(), 40);

    // c2 rewrites entry 7 and grows: a checkpoint of 60, signed with c2's real key, whose
    // consistency proof (from the forked tree) cannot match the cosigned root.
    let signer = Ed25519Signer::new(&origin, dalek(12)).unwrap();
    let mut forked = entries.clone();
    forked[7] = roster_entry(1_000_007);
    forked.extend((100..120).map(roster_entry));
    let tree = MemoryTree::from_entries(&forked);
    let cp60 = Checkpoint::new(&origin, 60, tree.root())
        .unwrap()
        .sign(&signer)
        .unwrap();
    p.fork.lock().unwrap().checkpoint = Some((cp60.to_bytes(), tree));
    for n in &nodes[..2] {
        eventually("an inconsistent-history alarm", WAIT, || async {
            n.witness()
                .alarms(10)
                .unwrap()
                .iter()
                .any(|a| a.kind == AlarmKind::InconsistentHistory)
        })
        .await;
    }

    // Then a split view: a different checkpoint of the cosigned size 40.
    let tree40 = MemoryTree::from_entries(&forked[..40]);
    let cp40 = Checkpoint::new(&origin, 40, tree40.root())
        .unwrap()
        .sign(&signer)
        .unwrap();
    p.fork.lock().unwrap().checkpoint = Some((cp40.to_bytes(), tree40));
    for n in &nodes[..2] {
        eventually("a split-view alarm", WAIT, || async {
            n.witness()
                .alarms(10)
                .unwrap()
                .iter()
                .any(|a| a.kind == AlarmKind::SplitView)
        })
        .await;
    }

    // The alarms are served, with both signed checkpoints as evidence.
    for a in &seen[..2] {
        let alarms: Vec<Alarm> = get(&client, format!("http://{a}/alarms"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            alarms.len(),
            2,
            "one alarm per distinct fork, not one per poll"
        );
        for alarm in &alarms {
            assert_eq!(alarm.origin, origin);
            assert_eq!(alarm.evidence.len(), 2);
            let old =
                SignedCheckpoint::open(alarm.evidence[0].as_bytes(), &log_verifier(2)).unwrap();
            let new =
                SignedCheckpoint::open(alarm.evidence[1].as_bytes(), &log_verifier(2)).unwrap();
            assert_eq!(old.checkpoint(), honest.checkpoint());
            match alarm.kind {
                AlarmKind::SplitView => {
                    assert_eq!(new.checkpoint().size(), 40);
                    assert_ne!(new.checkpoint().root(), old.checkpoint().root());
                }
                AlarmKind::InconsistentHistory => {
                    assert_eq!(new.checkpoint(), cp60.checkpoint());
                }
            }
        }
    }

    // Nobody cosigned a forged checkpoint: the witnesses still stand at the honest one, and
    // c2's own log, still honest underneath, shows only cosignatures of its real history.
    for n in &nodes[..2] {
        assert_eq!(
            n.witness().last_cosigned(&origin).unwrap().checkpoint(),
            honest.checkpoint()
        );
    }
    assert!(cosigned(&client, real[2], 2, 40, &[0, 1]).await);
    // The fork is not contagious: c0 is still cosigned by c1 (and by c2, whose witness is
    // honest).
    append_to(&client, real[0], 0, 10).await;
    eventually("c0 cosigned by c1 and c2", WAIT, || {
        cosigned(&client, real[0], 0, 10, &[1, 2])
    })
    .await;

    for n in nodes {
        n.shutdown().await;
    }
    proxy_task.abort();
}
