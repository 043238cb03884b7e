//! Roster ceremonies end to end: through the library (genesis by 2 of 3, admission,
//! revocation, succession, refusals), through the `lienthong-bootstrap roster …` binary
//! with files passed between key holders, and into a running federation: a central node
//! (`lienthong_bootstrap::node::Node` with its relay) holding a document for an offline
//! agency, and a revocation published to it over HTTP reaching the agency nodes by gossip.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use lienthong_bootstrap::ceremony::{self, CentralRequest, CeremonyError, Change, GenesisSpec};
use lienthong_bootstrap::config::{Config, RelaySetup};
use lienthong_bootstrap::node::Node as CentralNode;
use lienthong_node::federation::{LocalFederation, MemberRequest, NodeSpec, transport_keypair};
use lienthong_node::net::ROSTER_TOPIC;
use lienthong_node::node::Node;
use lienthong_protocol::agency::AgencyId;
use lienthong_protocol::document::example_document;
use lienthong_protocol::envelope::{Kind, Routing};
use lienthong_protocol::keys::{EncryptionSecret, SigningKey};
use lienthong_protocol::relay::RelayConfig;
use lienthong_protocol::roster::{AgencyState, RosterBook, RosterError, SignedRoster};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore as _, SeedableRng as _};

const WAIT: Duration = Duration::from_secs(30);

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Writes a member request for `code` (fresh keys, a fresh node) as `lienthong init` would.
fn member_file(dir: &Path, code: &str, rng: &mut ChaCha20Rng) -> PathBuf {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let node = transport_keypair(&seed).unwrap().public().to_peer_id();
    let request = MemberRequest {
        id: code.into(),
        name: format!("Agency {code}"),
        signing_key: b64(&SigningKey::generate(rng).verifying_key().0),
        encryption_key: b64(&EncryptionSecret::generate(rng).public_key().0),
        node: node.to_string(),
        addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
    };
    let path = dir.join(format!("{code}.json"));
    std::fs::write(&path, serde_json::to_string(&[request]).unwrap()).unwrap();
    path
}

fn central_file(dir: &Path, name: &str, rng: &mut ChaCha20Rng) -> PathBuf {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let request = CentralRequest {
        name: name.into(),
        peer_id: transport_keypair(&seed)
            .unwrap()
            .public()
            .to_peer_id()
            .to_string(),
        addrs: vec!["/ip4/127.0.0.1/tcp/4100".into()],
        log_key: b64(&SigningKey::generate(rng).verifying_key().0),
        http_url: "http://127.0.0.1:7400".into(),
    };
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string(&request).unwrap()).unwrap();
    path
}

#[test]
fn genesis_admission_revocation_and_succession_through_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let roots: Vec<PathBuf> = (1..=3).map(|i| d.join(format!("root-{i}.key"))).collect();
    let publics: Vec<_> = roots
        .iter()
        .map(|p| ceremony::root_keygen(p, "holder").unwrap())
        .collect();
    let keys: Vec<SigningKey> = roots
        .iter()
        .map(|p| ceremony::load_root_key(p).unwrap())
        .collect();
    assert!(
        ceremony::root_keygen(&roots[0], "again").is_err(),
        "never overwrites"
    );
    let outsider_path = d.join("outsider.key");
    ceremony::root_keygen(&outsider_path, "outsider").unwrap();
    let outsider = ceremony::load_root_key(&outsider_path).unwrap();

    let mut members = Vec::new();
    for code in ["000.00.00.G01", "000.00.00.H41"] {
        members.extend(ceremony::read_members(&member_file(d, code, &mut rng)).unwrap());
    }
    let central = ceremony::read_central(&central_file(d, "central-a", &mut rng)).unwrap();

    // Genesis, 2 of 3.
    let mut proposal = ceremony::genesis(GenesisSpec {
        federation: "lienthong-test".into(),
        threshold: 2,
        root_keys: publics.clone(),
        members,
        central: vec![central],
        witness_quorum: None,
        issued_ms: 1_790_000_000_000,
    })
    .unwrap();
    let genesis = proposal.roster().unwrap();
    ceremony::sign(&mut proposal, &keys[0], &roots[0], &genesis).unwrap();
    assert!(matches!(
        RosterBook::genesis(proposal.clone()),
        Err(RosterError::Threshold {
            valid: 1,
            threshold: 2
        })
    ));
    let err = ceremony::sign(&mut proposal, &outsider, &outsider_path, &genesis).unwrap_err();
    assert!(matches!(err, CeremonyError::NotRootKey { .. }), "{err}");
    assert!(err.to_string().contains("outsider.key"), "{err}");
    ceremony::sign(&mut proposal, &keys[2], &roots[2], &genesis).unwrap();
    let mut book = RosterBook::genesis(proposal.clone()).unwrap();
    // Through a file, as key holders pass it on.
    let file = d.join("roster.cbor");
    ceremony::write_roster(&file, &proposal).unwrap();
    assert_eq!(ceremony::read_roster(&file).unwrap().0, proposal);

    // Admit a district.
    let admit = ceremony::read_members(&member_file(d, "000.00.00.H42", &mut rng)).unwrap();
    let mut next = ceremony::propose(
        book.current(),
        admit.into_iter().map(Change::Admit).collect(),
        1_790_000_100_000,
    )
    .unwrap();
    let current = book.current().clone();
    for i in [0, 1] {
        ceremony::sign(&mut next, &keys[i], &roots[i], &current).unwrap();
    }
    assert_eq!(book.apply(next).unwrap().epoch, 2);
    let h42 = agency("000.00.00.H42");
    book.current().active_agency(&h42).unwrap();

    // Revoke H41: one signature is refused, two are accepted.
    let h41 = agency("000.00.00.H41");
    let current = book.current().clone();
    let mut revoke = ceremony::propose(
        &current,
        vec![Change::Revoke(h41.clone())],
        1_790_000_200_000,
    )
    .unwrap();
    ceremony::sign(&mut revoke, &keys[1], &roots[1], &current).unwrap();
    let summary = ceremony::summary(&revoke, &revoke.roster().unwrap(), &current);
    assert_eq!(
        (summary.signatures.valid, summary.signatures.needed),
        (1, 2)
    );
    assert!(matches!(
        book.apply(revoke.clone()),
        Err(RosterError::Threshold { valid: 1, .. })
    ));
    assert_eq!(book.current().epoch, 2);
    // A signature forced in by a non-root key makes the whole proposal unacceptable.
    let mut forged = revoke.clone();
    forged.sign(&outsider);
    forged.sign(&keys[2]);
    assert!(matches!(
        book.apply(forged),
        Err(RosterError::UnknownSigner(_))
    ));
    ceremony::sign(&mut revoke, &keys[2], &roots[2], &current).unwrap();
    book.apply(revoke).unwrap();
    assert_eq!(
        book.current().active_agency(&h41),
        Err(RosterError::Revoked(h41.clone()))
    );

    // Succession: G01 by H42.
    let g01 = agency("000.00.00.G01");
    let current = book.current().clone();
    let mut succeed = ceremony::propose(
        &current,
        vec![Change::Succeed {
            old: g01.clone(),
            new: h42.clone(),
        }],
        1_790_000_300_000,
    )
    .unwrap();
    for i in [0, 2] {
        ceremony::sign(&mut succeed, &keys[i], &roots[i], &current).unwrap();
    }
    book.apply(succeed).unwrap();
    assert_eq!(
        book.current().agency(&g01).unwrap().state,
        AgencyState::SucceededBy(h42.clone())
    );

    // Changes that make no sense are refused with the agency named.
    let current = book.current().clone();
    for (change, why) in [
        (
            Change::Revoke(agency("000.00.00.H99")),
            "000.00.00.H99 is not in the roster",
        ),
        (Change::Suspend(h41.clone()), "is revoked"),
        (Change::Reinstate(h42.clone()), "is active"),
        (
            Change::Succeed {
                old: h42.clone(),
                new: h41.clone(),
            },
            "not active",
        ),
    ] {
        let err = ceremony::propose(&current, vec![change], 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "expected {why:?} in {err}");
    }
}

#[test]
fn proposals_rotate_suspend_reinstate_and_change_central_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let root = SigningKey::generate(&mut rng);
    let members = ceremony::read_members(&member_file(d, "000.00.00.H41", &mut rng)).unwrap();
    let mut genesis = ceremony::genesis(GenesisSpec {
        federation: "f".into(),
        threshold: 1,
        root_keys: vec![root.verifying_key()],
        members,
        central: vec![ceremony::read_central(&central_file(d, "central-a", &mut rng)).unwrap()],
        witness_quorum: None,
        issued_ms: 1,
    })
    .unwrap();
    genesis.sign(&root);
    let mut book = RosterBook::genesis(genesis).unwrap();
    let mut step = |changes: Vec<Change>| {
        let mut next = ceremony::propose(book.current(), changes, 2).unwrap();
        next.sign(&root);
        book.apply(next).unwrap().clone()
    };
    let h41 = agency("000.00.00.H41");

    // Rotation: new keys and node, same standing.
    let rotated = ceremony::read_members(&member_file(d, "000.00.00.H41", &mut rng)).unwrap();
    let new_key = rotated[0].signing_key;
    let r = step(rotated.into_iter().map(Change::Rotate).collect());
    assert_eq!(r.agency(&h41).unwrap().signing_key, new_key);
    assert_eq!(r.agency(&h41).unwrap().state, AgencyState::Active);

    let r = step(vec![Change::Suspend(h41.clone())]);
    assert_eq!(
        r.active_agency(&h41),
        Err(RosterError::Suspended(h41.clone()))
    );
    let r = step(vec![Change::Reinstate(h41.clone())]);
    r.active_agency(&h41).unwrap();

    // Central nodes come and go; the witness quorum stays within the others' count.
    let r = step(vec![Change::AddCentral(
        ceremony::read_central(&central_file(d, "central-b", &mut rng)).unwrap(),
    )]);
    assert_eq!(r.central.len(), 2);
    let r = step(vec![Change::RemoveCentral("central-a".into())]);
    assert_eq!(r.central[0].name, "central-b");
    assert_eq!(r.federation.witness_quorum, 0);
    assert_eq!(r.epoch, 6);

    // Admitting a member twice, or an unknown central node, is refused.
    let again = ceremony::read_members(&member_file(d, "000.00.00.H41", &mut rng)).unwrap();
    let err = ceremony::propose(&r, again.into_iter().map(Change::Admit).collect(), 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already a member"), "{err}");
    let err = ceremony::propose(&r, vec![Change::RemoveCentral("nope".into())], 3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no central node named nope"), "{err}");
    let err = ceremony::propose(&r, vec![], 3).unwrap_err().to_string();
    assert!(err.contains("at least one change"), "{err}");
}

fn bin() -> Command {
    Command::cargo_bin("lienthong-bootstrap").unwrap()
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap()
}

fn stderr_of_failure(cmd: &mut Command) -> String {
    let out = cmd.assert().failure().get_output().stderr.clone();
    String::from_utf8(out).unwrap()
}

/// `roster show --json`'s signature count.
fn signatures(file: &Path, current: Option<&Path>) -> (u64, u64) {
    let mut cmd = bin();
    cmd.args(["roster", "show", "--json"]).arg(file);
    if let Some(c) = current {
        cmd.arg("--current").arg(c);
    }
    let v: serde_json::Value = serde_json::from_str(&stdout_of(&mut cmd)).unwrap();
    (
        v["signatures"]["valid"].as_u64().unwrap(),
        v["signatures"]["needed"].as_u64().unwrap(),
    )
}

fn root_keygen(out: &Path) -> String {
    let text = stdout_of(bin().args(["roster", "root-keygen", "--out"]).arg(out));
    text.lines()
        .find_map(|l| l.strip_prefix("public key:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn the_binary_runs_a_two_of_three_ceremony_with_files_passed_between_holders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let roots: Vec<PathBuf> = (1..=3).map(|i| d.join(format!("root-{i}.key"))).collect();
    let publics: Vec<String> = roots.iter().map(|p| root_keygen(p)).collect();
    let outsider = d.join("outsider.key");
    root_keygen(&outsider);

    // A central node's keys and its central.json.
    let central_dir = d.join("central-a");
    stdout_of(
        bin()
            .args([
                "keygen",
                "--federation",
                "lienthong-test",
                "--name",
                "central-a",
                "--http-url",
                "http://127.0.0.1:7400",
                "--advertise",
                "/ip4/127.0.0.1/tcp/4100",
                "--dir",
            ])
            .arg(&central_dir),
    );
    assert!(central_dir.join("transport.key").exists());

    let g01 = member_file(d, "000.00.00.G01", &mut rng);
    let h41 = member_file(d, "000.00.00.H41", &mut rng);
    let roster = d.join("roster.cbor");
    let mut genesis = bin();
    genesis
        .args([
            "roster",
            "genesis",
            "--federation",
            "lienthong-test",
            "--threshold",
            "2",
            "--root-pub",
        ])
        .args(&publics)
        .arg("--members")
        .args([&g01, &h41])
        .arg("--central")
        .arg(central_dir.join("central.json"))
        .arg("--out")
        .arg(&roster);
    stdout_of(&mut genesis);
    assert_eq!(signatures(&roster, None), (0, 2));
    let sign = |key: &Path, file: &Path, current: Option<&Path>| {
        let mut cmd = bin();
        cmd.args(["roster", "sign", "--key"]).arg(key).arg(file);
        if let Some(c) = current {
            cmd.arg("--current").arg(c);
        }
        cmd
    };
    stdout_of(&mut sign(&roots[0], &roster, None));
    let refused = stderr_of_failure(&mut sign(&outsider, &roster, None));
    assert!(
        refused.contains("outsider.key") && refused.contains("not a root key"),
        "{refused}"
    );
    stdout_of(&mut sign(&roots[1], &roster, None));
    assert_eq!(signatures(&roster, None), (2, 2));
    let table = stdout_of(bin().args(["roster", "show"]).arg(&roster));
    assert!(
        table.contains("000.00.00.H41") && table.contains("[complete]"),
        "{table}"
    );

    // Revoke H41: signed by one holder it is incomplete; the second completes it.
    let proposal = d.join("revoke.cbor");
    stdout_of(
        bin()
            .args(["roster", "propose", "--current"])
            .arg(&roster)
            .args(["--revoke", "000.00.00.H41", "--out"])
            .arg(&proposal),
    );
    stdout_of(&mut sign(&roots[2], &proposal, Some(&roster)));
    assert_eq!(signatures(&proposal, Some(&roster)), (1, 2));
    let table = stdout_of(
        bin()
            .args(["roster", "show"])
            .arg(&proposal)
            .arg("--current")
            .arg(&roster),
    );
    assert!(
        table.contains("[incomplete]") && table.contains("revoked"),
        "{table}"
    );
    stdout_of(&mut sign(&roots[0], &proposal, Some(&roster)));
    let mut book = RosterBook::genesis(ceremony::read_roster(&roster).unwrap().0).unwrap();
    book.apply(ceremony::read_roster(&proposal).unwrap().0)
        .unwrap();

    // Succession of G01 by a newly admitted H42, in one proposal.
    let h42 = member_file(d, "000.00.00.H42", &mut rng);
    let next = d.join("succeed.cbor");
    stdout_of(
        bin()
            .args(["roster", "propose", "--current"])
            .arg(&proposal)
            .arg("--admit")
            .arg(&h42)
            .args(["--succeed", "000.00.00.G01=000.00.00.H42", "--out"])
            .arg(&next),
    );
    for k in [&roots[1], &roots[2]] {
        stdout_of(&mut sign(k, &next, Some(&proposal)));
    }
    let applied = book.apply(ceremony::read_roster(&next).unwrap().0).unwrap();
    assert_eq!(
        applied.agency(&agency("000.00.00.G01")).unwrap().state,
        AgencyState::SucceededBy(agency("000.00.00.H42"))
    );

    // Bad input names the file.
    std::fs::write(d.join("junk.cbor"), b"not cbor").unwrap();
    let err = stderr_of_failure(bin().args(["roster", "show"]).arg(d.join("junk.cbor")));
    assert!(
        err.contains("junk.cbor") && err.contains("not a signed roster"),
        "{err}"
    );
    let err = stderr_of_failure(
        bin()
            .args(["roster", "propose", "--current"])
            .arg(&next)
            .args(["--revoke", "000.00.00.H99", "--out"])
            .arg(d.join("x.cbor")),
    );
    assert!(err.contains("000.00.00.H99 is not in the roster"), "{err}");
}

/// Waits until `check` holds, re-checking it every 25 ms.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Runs `lienthong-bootstrap roster publish` against `url` off the async runtime; returns
/// (success, stdout + stderr).
async fn publish_with_binary(url: String, file: PathBuf) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = bin()
            .args(["roster", "publish", "--url", &url])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_central_node_relays_holds_custody_and_gossips_published_revocations() {
    // A ministry (A) and one of its departments (C) share a node; B is a province.
    let (a, b, c) = (
        agency("000.00.00.G01"),
        agency("000.00.00.H41"),
        agency("000.00.01.G01"),
    );
    let specs = [
        NodeSpec {
            name: "central-a".into(),
            central: true,
            tenants: vec![],
            port: lienthong_node::federation::free_loopback_port(),
            http_port: None,
            host: std::net::Ipv4Addr::LOCALHOST,
        },
        NodeSpec {
            name: "ministry".into(),
            central: false,
            tenants: vec![
                (a.clone(), "Ministry".into()),
                (c.clone(), "Ministry department".into()),
            ],
            port: lienthong_node::federation::free_loopback_port(),
            http_port: None,
            host: std::net::Ipv4Addr::LOCALHOST,
        },
        NodeSpec {
            name: "province".into(),
            central: false,
            tenants: vec![(b.clone(), "Province".into())],
            port: lienthong_node::federation::free_loopback_port(),
            http_port: None,
            host: std::net::Ipv4Addr::LOCALHOST,
        },
    ];
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let fed = LocalFederation::generate("test", &specs, 3, 2, &mut rng).unwrap();
    let dirs: Vec<_> = specs.iter().map(|_| tempfile::tempdir().unwrap()).collect();

    // The central node: the ledger with its relay, as `lienthong-bootstrap run` starts it.
    let generated = &fed.nodes[0];
    let mut config = Config::new(
        "test",
        "central-a",
        dirs[0].path().to_path_buf(),
        ed25519_dalek::SigningKey::from_bytes(&generated.log_seed.unwrap()),
        ed25519_dalek::SigningKey::from_bytes(&[77; 32]),
    )
    .unwrap();
    let mut relay = RelaySetup::new(
        generated.transport_seed,
        fed.genesis.clone(),
        vec![generated.addr.clone()],
    );
    let mut timings = RelayConfig::new(String::new());
    timings.custody_after_ms = 1_000;
    timings.retry_base_ms = 200;
    timings.retry_max_ms = 5_000;
    relay.relay = Some(timings);
    config.relay = Some(relay);
    let central = CentralNode::start(config).await.unwrap();
    let url = format!("http://{}", central.local_addr());
    let relay = central.relay().unwrap();
    assert_eq!(relay.peer_id(), generated.peer_id);
    let start = |i: usize| {
        let setup = fed.setup(i, dirs[i].path()).unwrap();
        async move {
            let node = Node::start(setup).await.unwrap();
            node.listen_addrs().await;
            node
        }
    };

    // GET /roster serves the roster in force; the genesis is in the ledger.
    let served = reqwest::get(format!("{url}/roster")).await.unwrap();
    assert_eq!(served.status(), reqwest::StatusCode::OK);
    let served = SignedRoster::decode(&served.bytes().await.unwrap()).unwrap();
    assert_eq!(served, fed.genesis);
    eventually("the genesis roster is logged", || async {
        central.log().roster(1).unwrap().is_some()
    })
    .await;

    // A sends to B while B is offline: the central node takes custody; A leaves; B comes
    // up and receives from the central node.
    let node_a = start(1).await;
    let document = example_document(&a, std::slice::from_ref(&b), "Gửi qua nút trung tâm");
    let id = node_a
        .send_path()
        .send_document(&a, Kind::Document, Routing::default(), &document)
        .await
        .unwrap();
    eventually("the central node holds custody", || async {
        relay.driver().pending_deliveries().await.unwrap() == 1
    })
    .await;
    node_a.shutdown().await;
    let node_b = start(2).await;
    let mut inbox = node_b.driver().subscribe();
    let delivered = tokio::time::timeout(WAIT, async {
        loop {
            let d = inbox.recv().await.unwrap();
            if d.id == id {
                return d;
            }
        }
    });
    // The delivery may have landed before the subscription: check the durable inbox too.
    let in_inbox = || {
        node_b
            .store()
            .scan(lienthong_protocol::relay::store::Column::Inbox)
            .unwrap()
            .iter()
            .any(|(_, v)| v.as_slice() == id.as_bytes())
    };
    if !in_inbox() {
        assert_eq!(delivered.await.expect("B receives the document").tenant, b);
    }
    eventually("the custodian is done", || async {
        relay.driver().pending_deliveries().await.unwrap() == 0
    })
    .await;

    // Both agencies online and connected to the central node.
    let node_a = start(1).await;
    for (peer, what) in [
        (
            fed.nodes[1].peer_id,
            "A is a gossip peer of the central node",
        ),
        (
            fed.nodes[2].peer_id,
            "B is a gossip peer of the central node",
        ),
    ] {
        eventually(what, || async {
            relay.net().peer_score(peer).await.unwrap().is_some()
        })
        .await;
    }
    // Subscriptions travel right after the connection: wait until the central node lists
    // both agency nodes on the roster topic, so that its publication reaches them.
    eventually(
        "both agency nodes are subscribed to the roster topic, as the central node sees it",
        || async {
            let peers = relay.net().topic_peers(ROSTER_TOPIC).await.unwrap();
            [fed.nodes[1].peer_id, fed.nodes[2].peer_id]
                .iter()
                .all(|p| peers.contains(p))
        },
    )
    .await;

    // A revocation of C signed by one root key is refused by the central node … (C, not
    // A: a node whose every agency is revoked is cut off by the allow-list at once, so it
    // would never hear of its own revocation.)
    let revoke = |r: &mut lienthong_protocol::roster::Roster| {
        for e in &mut r.agencies {
            if e.id == c {
                e.state = AgencyState::Revoked;
            }
        }
    };
    let weak = fed.next_epoch(&fed.roster, &[0], revoke).unwrap();
    let weak_file = dirs[0].path().join("weak.cbor");
    ceremony::write_roster(&weak_file, &weak).unwrap();
    let (ok, out) = publish_with_binary(url.clone(), weak_file).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("403") && out.contains("1 valid root signatures"),
        "{out}"
    );
    assert_eq!(relay.roster().borrow().epoch, 1);

    // … one signed by 2 of 3 is applied, gossiped, and reaches both agency nodes.
    let strong = fed.next_epoch(&fed.roster, &[1, 2], revoke).unwrap();
    let strong_file = dirs[0].path().join("strong.cbor");
    ceremony::write_roster(&strong_file, &strong).unwrap();
    let (ok, out) = publish_with_binary(url.clone(), strong_file.clone()).await;
    assert!(ok, "{out}");
    assert!(out.contains("epoch 2 accepted"), "{out}");
    for node in [&node_a, &node_b] {
        let mut watch = node.roster();
        let reached = tokio::time::timeout(WAIT, watch.wait_for(|r| r.epoch == 2)).await;
        assert!(
            reached.is_ok(),
            "the new epoch reaches the agency node by gossip; central {:?}, agency {:?}",
            relay.net().stats(),
            node.net().stats()
        );
    }
    let served = reqwest::get(format!("{url}/roster")).await.unwrap();
    let served = SignedRoster::decode(&served.bytes().await.unwrap()).unwrap();
    assert_eq!(served, strong);
    assert!(
        central.log().roster(2).unwrap().is_some(),
        "epoch 2 is logged"
    );
    // Publishing the same epoch again is harmless; an older one is refused.
    let (ok, out) = publish_with_binary(url.clone(), strong_file).await;
    assert!(ok, "{out}");

    assert_eq!(
        node_b.roster().borrow().active_agency(&c),
        Err(RosterError::Revoked(c.clone()))
    );

    // The revoked agency can no longer send; its co-hosted ministry still can.
    let refused = node_a
        .send_path()
        .send_document(
            &c,
            Kind::Document,
            Routing::default(),
            &example_document(&c, std::slice::from_ref(&b), "Sau khi bị thu hồi"),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("revoked"), "{message}");
    node_a
        .send_path()
        .send_document(
            &a,
            Kind::Document,
            Routing::default(),
            &example_document(&a, std::slice::from_ref(&b), "Vẫn gửi được"),
        )
        .await
        .unwrap();

    // Two epochs put in force back to back (as when both arrive in one gossip burst): the
    // roster watch may show only the second, yet both are logged, in order.
    let third = fed
        .next_epoch(&strong.roster().unwrap(), &[0, 1], |_| {})
        .unwrap();
    let fourth = fed
        .next_epoch(&third.roster().unwrap(), &[0, 2], |_| {})
        .unwrap();
    assert_eq!(relay.apply_roster(third.clone()).await.unwrap(), 3);
    assert_eq!(relay.apply_roster(fourth.clone()).await.unwrap(), 4);
    eventually("epochs 3 and 4 are both logged", || async {
        central.log().roster(4).unwrap().is_some()
    })
    .await;
    assert_eq!(
        central.log().roster(3).unwrap(),
        Some(third.to_bytes().unwrap())
    );
    assert_eq!(
        central.log().roster(4).unwrap(),
        Some(fourth.to_bytes().unwrap())
    );

    node_a.shutdown().await;
    node_b.shutdown().await;
    central.shutdown().await;
}
