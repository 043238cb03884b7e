//! In-process multi-node tests of the networking layer: real libp2p on 127.0.0.1.
//! Nothing sleeps to synchronise: every wait is for an event, under a timeout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use lienthong_node::net::{
    Command, MemoryPayloadStore, NetConfig, NetEvent, NetHandle, Network, PayloadStore,
};
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::content_id::ContentId;
use lienthong_protocol::keys::EncryptionSecret;
use lienthong_protocol::relay::Verdict;
use lienthong_protocol::relay::wire::Wire;
use lienthong_protocol::seal::{self, ChunkId, EpochPolicy, PayloadId, SenderEpochs};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(20);

struct Node {
    handle: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
}

fn config(allowed: &[PeerId]) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        allowed: allowed.to_vec(),
        gossip_heartbeat: Duration::from_millis(100),
        ..NetConfig::default()
    }
}

/// Starts a node and waits until it listens on every configured address.
async fn start(key: Keypair, config: NetConfig, store: Arc<dyn PayloadStore>) -> Node {
    let listens = config.listen.len();
    let (handle, mut events, task) = Network::new(config, key, store).unwrap();
    tokio::spawn(task.run());
    let mut addrs = Vec::new();
    while addrs.len() < listens {
        let addr = expect(&mut events, |e| match e {
            NetEvent::Listening { addr } => Some(addr.clone()),
            _ => None,
        })
        .await;
        addrs.push(addr);
    }
    Node {
        peer: handle.local_peer_id(),
        handle,
        events,
        addrs,
    }
}

/// Waits (bounded) for the first event `pick` accepts, skipping the others.
async fn expect<T>(
    events: &mut mpsc::Receiver<NetEvent>,
    mut pick: impl FnMut(&NetEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.recv().await.expect("network task stopped");
            if let Some(t) = pick(&event) {
                return t;
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

async fn connect(from: &mut Node, to: &mut Node, addr: Multiaddr) {
    from.handle
        .send(Command::Dial {
            peer: to.peer,
            addrs: vec![addr],
        })
        .await
        .unwrap();
    let to_peer = to.peer;
    expect(&mut from.events, |e| match e {
        NetEvent::PeerConnected { peer } if *peer == to_peer => Some(()),
        _ => None,
    })
    .await;
    let from_peer = from.peer;
    expect(&mut to.events, |e| match e {
        NetEvent::PeerConnected { peer } if *peer == from_peer => Some(()),
        _ => None,
    })
    .await;
}

fn keys(n: usize) -> (Vec<Keypair>, Vec<PeerId>) {
    let keys: Vec<Keypair> = (0..n).map(|_| Keypair::generate_ed25519()).collect();
    let peers = keys.iter().map(|k| k.public().to_peer_id()).collect();
    (keys, peers)
}

fn mem() -> Arc<dyn PayloadStore> {
    Arc::new(MemoryPayloadStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_is_acknowledged_over_quic_and_late_acks_become_requests() {
    let (mut k, p) = keys(2);
    let mut cfg_a = config(&p);
    cfg_a
        .listen
        .push("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap());
    let mut a = start(k.remove(0), cfg_a, mem()).await;
    let mut b = start(k.remove(0), config(&p), mem()).await;
    let quic = a
        .addrs
        .iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::QuicV1)))
        .unwrap()
        .clone();
    connect(&mut b, &mut a, quic).await;

    let envelope = b"a signed envelope".to_vec();
    let id = ContentId::of(&envelope);
    b.handle
        .send(Command::Send {
            peer: a.peer,
            wire: Wire::Push {
                envelope: envelope.clone(),
            },
        })
        .await
        .unwrap();
    let b_peer = b.peer;
    let got = expect(&mut a.events, |e| match e {
        NetEvent::Message {
            peer,
            wire: Wire::Push { envelope },
            responder: Some(_),
        } if *peer == b_peer => Some(envelope.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, envelope);

    // The relay's ack answers the pending request.
    a.handle
        .send(Command::Send {
            peer: b.peer,
            wire: Wire::PushAck {
                id,
                receipts: vec![],
            },
        })
        .await
        .unwrap();
    let a_peer = a.peer;
    let acked = expect(&mut b.events, |e| match e {
        NetEvent::Response {
            peer,
            wire: Wire::PushAck { id, .. },
        } if *peer == a_peer => Some(*id),
        _ => None,
    })
    .await;
    assert_eq!(acked, id);

    // An ack with nothing pending goes out as a request of its own.
    let late = ContentId::of(b"another");
    a.handle
        .send(Command::Send {
            peer: b.peer,
            wire: Wire::PushAck {
                id: late,
                receipts: vec![],
            },
        })
        .await
        .unwrap();
    let got = expect(&mut b.events, |e| match e {
        NetEvent::Message {
            peer,
            wire: Wire::PushAck { id, .. },
            responder: None,
        } if *peer == a_peer => Some(*id),
        _ => None,
    })
    .await;
    assert_eq!(got, late);
    // (Read after a later round trip: the response may reach `b` before `a`'s task
    // counts it.)
    let stats = a.handle.stats();
    assert_eq!((stats.acks_as_response, stats.acks_as_request), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_outside_the_allow_list_are_refused_until_listed() {
    let (mut k, p) = keys(2);
    // `a` allows only itself; `x` allows `a`.
    let mut a = start(k.remove(0), config(&p[..1]), mem()).await;
    let mut x = start(k.remove(0), config(&p), mem()).await;
    let x_peer = x.peer;

    x.handle
        .send(Command::Dial {
            peer: a.peer,
            addrs: a.addrs.clone(),
        })
        .await
        .unwrap();
    expect(&mut a.events, |e| match e {
        NetEvent::Refused { peer: Some(p), .. } if *p == x_peer => Some(()),
        NetEvent::PeerConnected { peer } if *peer == x_peer => {
            panic!("a peer outside the allow-list connected")
        }
        _ => None,
    })
    .await;
    assert_eq!(a.handle.stats().connections_denied, 1);

    // A relay request to the refusing node fails on the sender's side.
    x.handle
        .send(Command::Send {
            peer: a.peer,
            wire: Wire::Push { envelope: vec![1] },
        })
        .await
        .unwrap();
    let a_peer = a.peer;
    expect(&mut x.events, |e| match e {
        NetEvent::SendFailed { peer, .. } if *peer == a_peer => Some(()),
        _ => None,
    })
    .await;

    // The roster now lists `x`: it may connect.
    a.handle.send(Command::SetAllowed(p.clone())).await.unwrap();
    let addr = a.addrs[0].clone();
    connect(&mut x, &mut a, addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_forwarded_only_after_accept_and_never_after_reject() {
    let (mut k, p) = keys(3);
    let topic = "lienthong/unit/H41".to_owned();
    let mut nodes = Vec::new();
    for key in k.drain(..) {
        let mut cfg = config(&p);
        cfg.topics = vec![topic.clone()];
        nodes.push(start(key, cfg, mem()).await);
    }
    let mut c = nodes.pop().unwrap();
    let mut b = nodes.pop().unwrap();
    let mut a = nodes.pop().unwrap();
    // A line: a — b — c.
    let addr = b.addrs[0].clone();
    connect(&mut a, &mut b, addr.clone()).await;
    connect(&mut c, &mut b, addr).await;
    let subscribed = |who: PeerId, t: String| {
        move |e: &NetEvent| match e {
            NetEvent::Subscribed { peer, topic } if *peer == who && *topic == t => Some(()),
            _ => None,
        }
    };
    expect(&mut a.events, subscribed(b.peer, topic.clone())).await;
    expect(&mut b.events, subscribed(c.peer, topic.clone())).await;

    let publish = |bytes: &[u8]| Command::Publish {
        topic: topic.clone(),
        bytes: bytes.to_vec(),
    };
    let a_peer = a.peer;
    let gossip_at = |want: &'static [u8]| {
        move |e: &NetEvent| match e {
            NetEvent::Gossip {
                peer,
                message,
                envelope,
                ..
            } if envelope == want => Some((*peer, *message)),
            _ => None,
        }
    };

    // m1 reaches b, which holds it for the verdict.
    a.handle.send(publish(b"m1")).await.unwrap();
    let (from, m1) = expect(&mut b.events, gossip_at(b"m1")).await;
    assert_eq!(from, a_peer);
    // m2 reaches b too; meanwhile c has seen nothing, since b has accepted nothing.
    a.handle.send(publish(b"m2")).await.unwrap();
    let (_, m2) = expect(&mut b.events, gossip_at(b"m2")).await;
    while let Ok(e) = c.events.try_recv() {
        assert!(
            !matches!(e, NetEvent::Gossip { .. }),
            "forwarded early: {e:?}"
        );
    }

    // Reject m2 (a's score at b drops), accept m1 (c gets it).
    b.handle
        .send(Command::Verdict {
            message: m2,
            verdict: Verdict::Reject,
        })
        .await
        .unwrap();
    b.handle
        .send(Command::Verdict {
            message: m1,
            verdict: Verdict::Accept,
        })
        .await
        .unwrap();
    let b_peer = b.peer;
    let got = expect(&mut c.events, |e| match e {
        NetEvent::Gossip { peer, envelope, .. } => {
            assert_ne!(envelope, b"m2", "a rejected message was forwarded");
            assert_eq!(*peer, b_peer);
            Some(envelope.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(got, b"m1");

    // m3 is accepted and reaches c; m2 never does.
    a.handle.send(publish(b"m3")).await.unwrap();
    let (_, m3) = expect(&mut b.events, gossip_at(b"m3")).await;
    b.handle
        .send(Command::Verdict {
            message: m3,
            verdict: Verdict::Accept,
        })
        .await
        .unwrap();
    let got = expect(&mut c.events, |e| match e {
        NetEvent::Gossip { envelope, .. } => {
            assert_ne!(envelope, b"m2", "a rejected message was forwarded");
            Some(envelope.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(got, b"m3");

    let stats = b.handle.stats();
    assert_eq!((stats.gossip_accepted, stats.gossip_rejected), (2, 1));
    let score = b.handle.peer_score(a_peer).await.unwrap().unwrap();
    assert!(
        score < 0.0,
        "a's score at b after a rejected message: {score}"
    );
}

/// Serves chunks freely up to `open_for`, then holds every further read until `open`.
struct GatedStore {
    inner: MemoryPayloadStore,
    open_for: usize,
    open: Mutex<bool>,
    cv: Condvar,
    reads: Mutex<HashMap<ChunkId, usize>>,
    read_count: watch::Sender<usize>,
}

impl GatedStore {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl PayloadStore for GatedStore {
    fn get_manifest(&self, id: &PayloadId) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.get_manifest(id)
    }
    fn put_manifest(&self, id: &PayloadId, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.put_manifest(id, bytes)
    }
    fn has_chunk(&self, id: &ChunkId) -> std::io::Result<bool> {
        self.inner.has_chunk(id)
    }
    fn get_chunk(&self, id: &ChunkId) -> std::io::Result<Option<Vec<u8>>> {
        let n = {
            let mut reads = self.reads.lock().unwrap();
            *reads.entry(*id).or_default() += 1;
            let n = reads.values().sum::<usize>();
            // Published under the lock: concurrent reads cannot publish a smaller total
            // after a larger one.
            self.read_count.send_replace(n);
            n
        };
        if n > self.open_for {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.cv.wait(open).unwrap();
            }
        }
        self.inner.get_chunk(id)
    }
    fn put_chunk(&self, id: &ChunkId, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.put_chunk(id, bytes)
    }
}

/// Counts writes per chunk.
struct CountingStore {
    inner: MemoryPayloadStore,
    writes: Mutex<HashMap<ChunkId, usize>>,
    stored: watch::Sender<usize>,
    puts: AtomicUsize,
}

impl PayloadStore for CountingStore {
    fn get_manifest(&self, id: &PayloadId) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.get_manifest(id)
    }
    fn put_manifest(&self, id: &PayloadId, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.put_manifest(id, bytes)
    }
    fn has_chunk(&self, id: &ChunkId) -> std::io::Result<bool> {
        self.inner.has_chunk(id)
    }
    fn get_chunk(&self, id: &ChunkId) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.get_chunk(id)
    }
    fn put_chunk(&self, id: &ChunkId, bytes: &[u8]) -> std::io::Result<()> {
        *self.writes.lock().unwrap().entry(*id).or_default() += 1;
        self.inner.put_chunk(id, bytes)?;
        self.puts.fetch_add(1, Ordering::SeqCst);
        // Concurrent writes may publish their counts out of order: keep the largest.
        let count = self.inner.chunk_count();
        self.stored.send_modify(|n| *n = (*n).max(count));
        Ok(())
    }
}

async fn wait_until(rx: &mut watch::Receiver<usize>, at_least: usize) {
    tokio::time::timeout(WAIT, rx.wait_for(|n| *n >= at_least))
        .await
        .expect("timed out")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_fetch_resumes_with_only_the_missing_chunks() {
    // A 50 MiB payload (DESIGN's resumable-fetch case): 200 chunks of 256 KiB.
    const PAYLOAD: usize = 50 * 1024 * 1024;
    const CHUNKS: usize = PAYLOAD / (256 * 1024);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let sender = AgencyId::parse("000.00.00.G22").unwrap();
    let recipient = AgencyId::parse("000.00.00.H41").unwrap();
    let secret = EncryptionSecret::generate(&mut rng);
    let mut epochs = SenderEpochs::new(EpochPolicy::default());
    let plaintext: Vec<u8> = (0..PAYLOAD).map(|i| (i % 251) as u8).collect();
    let sealed = seal::seal(
        &plaintext,
        &sender,
        &[(recipient, secret.public_key())],
        &mut epochs,
        1_700_000_000_000,
        &mut rng,
    )
    .unwrap();
    assert_eq!(sealed.chunks.len(), CHUNKS);
    let manifest = sealed.manifest.id();

    // Cut after a quarter: the source serves its first FIRST reads. Which chunks those are
    // is not fixed: requests are read concurrently on the blocking pool, so a chunk asked
    // for after another may pass the gate first.
    const FIRST: usize = CHUNKS / 4;
    let (reads_tx, mut reads) = watch::channel(0);
    let source = Arc::new(GatedStore {
        inner: MemoryPayloadStore::new(),
        open_for: FIRST,
        open: Mutex::new(false),
        cv: Condvar::new(),
        reads: Mutex::new(HashMap::new()),
        read_count: reads_tx,
    });
    source.inner.insert_sealed(&sealed.manifest, &sealed.chunks);
    let (stored_tx, mut stored) = watch::channel(0);
    let sink = Arc::new(CountingStore {
        inner: MemoryPayloadStore::new(),
        writes: Mutex::new(HashMap::new()),
        stored: stored_tx,
        puts: AtomicUsize::new(0),
    });

    let (mut k, p) = keys(2);
    let mut a = start(k.remove(0), config(&p), source.clone()).await;
    let mut b = start(k.remove(0), config(&p), sink.clone()).await;
    let addr = a.addrs[0].clone();
    connect(&mut b, &mut a, addr.clone()).await;

    b.handle
        .send(Command::Fetch {
            peer: a.peer,
            manifest: manifest.0,
        })
        .await
        .unwrap();
    // The first chunks arrive; the next window is stuck at the source.
    wait_until(&mut stored, FIRST).await;
    let window = NetConfig::default().fetch_window;
    wait_until(&mut reads, FIRST + window).await;
    let stored_before = sink.inner.chunk_count();
    assert_eq!(stored_before, FIRST);

    // Cut the connection midway.
    b.handle
        .send(Command::Disconnect { peer: a.peer })
        .await
        .unwrap();
    let a_peer = a.peer;
    expect(&mut b.events, |e| match e {
        NetEvent::PeerDisconnected { peer } if *peer == a_peer => Some(()),
        NetEvent::PayloadStored { .. } => panic!("completed before the cut"),
        _ => None,
    })
    .await;
    // The resume starts from what the sink holds now: FIRST chunks, not necessarily the
    // first FIRST (see above). Nothing more is stored before the reconnection: the source
    // holds every read past its first FIRST until `open`, and by then `b` has closed the
    // connection the answers would go on.
    let chunks = sealed.manifest.chunks();
    let stored_at_cut: HashSet<ChunkId> = chunks
        .iter()
        .filter(|c| sink.inner.has_chunk(c).unwrap())
        .copied()
        .collect();
    assert_eq!(stored_at_cut.len(), FIRST);
    let reads_at_cut = source.reads.lock().unwrap().clone();
    source.open();
    assert!(!sink.inner.has_manifest(&manifest));

    // Reconnect: the fetch resumes by itself and completes. (Only `b`'s side is awaited:
    // `a` may notice the old connection's end after the new one is up, and then reports
    // neither a disconnection nor a new connection.)
    b.handle
        .send(Command::Dial {
            peer: a_peer,
            addrs: vec![addr],
        })
        .await
        .unwrap();
    expect(&mut b.events, |e| match e {
        NetEvent::PeerConnected { peer } if *peer == a_peer => Some(()),
        _ => None,
    })
    .await;
    let done = expect(&mut b.events, |e| match e {
        NetEvent::PayloadStored { manifest } => Some(*manifest),
        NetEvent::FetchFailed { reason, .. } => panic!("fetch failed: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(done, manifest.0);
    assert!(sink.inner.has_manifest(&manifest));

    // The chunks stored before the resume were never asked for again; every other one was
    // (those in flight at the cut, already read once, were read again). Every chunk was
    // written once; the requests are every chunk once plus those lost in the cut.
    let reads = source.reads.lock().unwrap().clone();
    let count = |reads: &HashMap<ChunkId, usize>, c: &ChunkId| reads.get(c).copied().unwrap_or(0);
    for (index, chunk) in chunks.iter().enumerate() {
        let again = count(&reads, chunk) - count(&reads_at_cut, chunk);
        if stored_at_cut.contains(chunk) {
            assert_eq!(
                again, 0,
                "chunk {index}, stored before the resume, was fetched again"
            );
        } else {
            assert!(
                again >= 1,
                "chunk {index}, missing at the resume, was not fetched"
            );
        }
    }
    let writes = sink.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), CHUNKS);
    assert!(writes.values().all(|n| *n == 1), "{writes:?}");
    let stats = b.handle.stats();
    assert_eq!(stats.fetch_chunks_stored, CHUNKS as u64);
    assert_eq!(stats.fetch_manifest_requests, 1);
    assert!(stats.fetch_chunk_failures >= 1, "{stats:?}");
    assert_eq!(
        stats.fetch_chunk_requests,
        CHUNKS as u64 + stats.fetch_chunk_failures,
        "{stats:?}"
    );
    assert_eq!(stats.fetch_completed, 1);
    // Decrypting is the recipient's business; the bytes are exactly the sealed ones.
    for (i, chunk) in sealed.chunks.iter().enumerate() {
        let id = sealed.manifest.chunks()[i];
        assert_eq!(sink.inner.get_chunk(&id).unwrap().as_ref(), Some(chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reachable_only_through_a_relay_receives_a_push() {
    let (mut k, p) = keys(3);
    let mut relay_cfg = config(&p);
    relay_cfg.relay_server = true;
    let mut r = start(k.remove(0), relay_cfg, mem()).await;
    // `c` listens on nothing but the relay circuit.
    let mut c_cfg = config(&p);
    c_cfg.listen.clear();
    let mut c = start(k.remove(0), c_cfg, mem()).await;
    let mut a = start(k.remove(0), config(&p), mem()).await;

    let relay_addr = r.addrs[0].clone();
    connect(&mut c, &mut r, relay_addr.clone()).await;
    let circuit = relay_addr
        .with(Protocol::P2p(r.peer))
        .with(Protocol::P2pCircuit);
    c.handle
        .send(Command::ListenOn(circuit.clone()))
        .await
        .unwrap();
    let r_peer = r.peer;
    expect(&mut c.events, |e| match e {
        NetEvent::Reserved { relay } if *relay == r_peer => Some(()),
        _ => None,
    })
    .await;

    let via = circuit.with(Protocol::P2p(c.peer));
    connect(&mut a, &mut c, via).await;
    let envelope = b"through the relay".to_vec();
    a.handle
        .send(Command::Send {
            peer: c.peer,
            wire: Wire::Push {
                envelope: envelope.clone(),
            },
        })
        .await
        .unwrap();
    let a_peer = a.peer;
    let got = expect(&mut c.events, |e| match e {
        NetEvent::Message {
            peer,
            wire: Wire::Push { envelope },
            ..
        } if *peer == a_peer => Some(envelope.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, envelope);
    c.handle
        .send(Command::Send {
            peer: a.peer,
            wire: Wire::PushAck {
                id: ContentId::of(&envelope),
                receipts: vec![],
            },
        })
        .await
        .unwrap();
    let c_peer = c.peer;
    expect(&mut a.events, |e| match e {
        NetEvent::Response { peer, .. } if *peer == c_peer => Some(()),
        _ => None,
    })
    .await;
}

/// Serves a payload with one chunk tampered with.
struct TamperingStore {
    inner: MemoryPayloadStore,
    bad: ChunkId,
}

impl PayloadStore for TamperingStore {
    fn get_manifest(&self, id: &PayloadId) -> std::io::Result<Option<Vec<u8>>> {
        self.inner.get_manifest(id)
    }
    fn put_manifest(&self, id: &PayloadId, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.put_manifest(id, bytes)
    }
    fn has_chunk(&self, id: &ChunkId) -> std::io::Result<bool> {
        self.inner.has_chunk(id)
    }
    fn get_chunk(&self, id: &ChunkId) -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = self.inner.get_chunk(id)?;
        if *id == self.bad
            && let Some(bytes) = chunk.as_mut()
        {
            bytes[0] ^= 1;
        }
        Ok(chunk)
    }
    fn put_chunk(&self, id: &ChunkId, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.put_chunk(id, bytes)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_chunk_is_refused_counted_and_penalised() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let sender = AgencyId::parse("000.00.00.G22").unwrap();
    let recipient = AgencyId::parse("000.00.00.H41").unwrap();
    let secret = EncryptionSecret::generate(&mut rng);
    let mut epochs = SenderEpochs::new(EpochPolicy::default());
    let sealed = seal::seal(
        &vec![5u8; 600 * 1024],
        &sender,
        &[(recipient, secret.public_key())],
        &mut epochs,
        1_700_000_000_000,
        &mut rng,
    )
    .unwrap();
    let source = Arc::new(TamperingStore {
        inner: MemoryPayloadStore::new(),
        bad: sealed.manifest.chunks()[1],
    });
    source.inner.insert_sealed(&sealed.manifest, &sealed.chunks);
    let sink = Arc::new(MemoryPayloadStore::new());

    let (mut k, p) = keys(2);
    let mut a = start(k.remove(0), config(&p), source).await;
    let mut b = start(k.remove(0), config(&p), sink.clone()).await;
    let addr = a.addrs[0].clone();
    connect(&mut b, &mut a, addr).await;

    let manifest = sealed.manifest.id();
    b.handle
        .send(Command::Fetch {
            peer: a.peer,
            manifest: manifest.0,
        })
        .await
        .unwrap();
    // The only peer that has it sent garbage: the fetch is abandoned, not completed.
    expect(&mut b.events, |e| match e {
        NetEvent::FetchFailed { manifest: m, .. } if *m == manifest.0 => Some(()),
        NetEvent::PayloadStored { .. } => panic!("stored a payload with a tampered chunk"),
        _ => None,
    })
    .await;
    assert!(!sink.has_manifest(&manifest));
    assert!(!sink.has_chunk(&sealed.manifest.chunks()[1]).unwrap());
    let stats = b.handle.stats();
    assert_eq!(stats.invalid_fetch, 1, "{stats:?}");
    assert_eq!(stats.penalties, 1, "{stats:?}");
    let score = b.handle.peer_score(a.peer).await.unwrap().unwrap();
    assert!(
        score < 0.0,
        "a's score at b after a tampered chunk: {score}"
    );
}
