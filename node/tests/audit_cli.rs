//! `lienthong audit` end to end: an in-process central node log serves a generated ledger,
//! the real binary fetches it (resumably), replays it clean, detects every tampering of the
//! corpus with its specific violation, cross-checks two logs for an omitted entry, and
//! reports the counts and stalled documents the generator knows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use lienthong_bootstrap::config::{Config, witness_name};
use lienthong_bootstrap::node::Node;
use lienthong_node::audit::synth::{self, Inject, Ledger, Spec};
use lienthong_protocol::envelope::SignedEnvelope;
use lienthong_protocol::keys::VerifyingKey;
use lienthong_protocol::ledger::log_origin;
use lienthong_protocol::rfc6962::TreeBuilder;
use lienthong_protocol::signed_note::{Ed25519Signer, Note};
use lienthong_protocol::tlog_checkpoint::Checkpoint;
use lienthong_protocol::tlog_cosignature::{Cosigner, TimestampedCosigner};
use lienthong_protocol::tlog_tiles::{encode_entry_bundle, parse_entry_bundle};
use serde_json::Value;

const FED: &str = "lienthong-test";
/// Ten days after the first document: every "past due" document is past due.
const NOW: u64 = synth::T0 + 10 * 86_400_000;

fn dalek(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

/// Log key of central node `i` (`c0`, `c1`).
fn log_key(i: u8) -> ed25519_dalek::SigningKey {
    dalek(10 + i)
}

/// The witness `w1` (not running: the test cosigns in its name).
fn witness() -> Cosigner {
    Cosigner::new(&witness_name(&log_origin(FED, "w1")), dalek(30)).unwrap()
}

fn spec(documents: usize, inject: Vec<Inject>) -> Spec {
    Spec {
        agencies: 6,
        documents,
        federation: FED.into(),
        central: (0..2u8)
            .map(|i| {
                (
                    format!("c{i}"),
                    VerifyingKey(log_key(i).verifying_key().to_bytes()),
                )
            })
            .collect(),
        witness_quorum: 1,
        inject,
    }
}

/// A running central node log `c<i>` holding `entries` (all but `skip`), its checkpoint of
/// them cosigned by `w1`.
async fn serve(i: u8, ledger: &Ledger, skip: Option<usize>, dir: &Path) -> Node {
    let mut c = Config::new(
        FED,
        &format!("c{i}"),
        dir.join(format!("c{i}")),
        log_key(i),
        dalek(20 + i),
    )
    .unwrap();
    c.checkpoint_interval = Duration::from_millis(50);
    c.witness_interval = Duration::from_secs(3600);
    c.request_timeout = Duration::from_millis(200);
    let w1_log = Ed25519Signer::new(&log_origin(FED, "w1"), dalek(31)).unwrap();
    c.add_peer(
        "w1",
        "http://127.0.0.1:9/",
        &w1_log.verifier().to_vkey(),
        &witness().public().to_vkey(),
    )
    .unwrap();
    let node = Node::start(c).await.unwrap();
    let base = format!("http://{}", node.local_addr());
    let client = reqwest::Client::new();
    let roster_at: BTreeSet<usize> = ledger.roster_entries.values().copied().collect();
    let mut n = 0u64;
    for (k, e) in ledger.entries.iter().enumerate() {
        if Some(k) == skip {
            continue;
        }
        let (path, body) = if roster_at.contains(&k) {
            let epoch = *ledger
                .roster_entries
                .iter()
                .find(|(_, at)| **at == k)
                .unwrap()
                .0;
            ("roster", ledger.rosters[&epoch].to_bytes().unwrap())
        } else {
            ("add", e.clone())
        };
        let r = client
            .post(format!("{base}/{path}?wait=false"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["index"], n);
        n += 1;
    }
    // Wait for the checkpoint of everything, then cosign it as w1.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let note = loop {
        let b = client
            .get(format!("{base}/checkpoint"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let note = Note::parse(&b).unwrap();
        let cp = Checkpoint::parse(note.text().as_bytes()).unwrap();
        if cp.size() == n {
            break note;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint of {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut cosigned = Note::new(note.text()).unwrap();
    let w = witness();
    cosigned
        .sign(&TimestampedCosigner {
            cosigner: &w,
            timestamp: synth::T0 / 1000,
        })
        .unwrap();
    let r = client
        .post(format!("{base}/cosignature"))
        .body(cosigned.to_bytes())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "cosignature: {}", r.status());
    node
}

fn lienthong() -> Command {
    Command::cargo_bin("lienthong").unwrap()
}

/// Runs the binary off the runtime's threads (the log keeps serving).
async fn run(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = lienthong().args(&args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn s(x: impl AsRef<std::ffi::OsStr>) -> String {
    x.as_ref().to_string_lossy().into_owned()
}

fn write_genesis(ledger: &Ledger, dir: &Path) -> PathBuf {
    let p = dir.join("genesis.roster");
    std::fs::write(&p, ledger.rosters[&1].to_bytes().unwrap()).unwrap();
    p
}

fn trust(genesis: &Path) -> Vec<String> {
    vec![
        "--genesis".into(),
        s(genesis),
        "--witness".into(),
        witness().public().to_vkey(),
        "--now-ms".into(),
        NOW.to_string(),
    ]
}

/// `audit replay --json` of `sources`: exit code and the JSON.
async fn replay_json(sources: &[&Path], genesis: &Path) -> (i32, Value) {
    let mut args = vec!["audit".to_string(), "replay".into(), "--json".into()];
    args.extend(sources.iter().map(s));
    args.extend(trust(genesis));
    let (code, out, err) = run(args).await;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    (code, v)
}

fn kinds(v: &Value) -> BTreeSet<String> {
    v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["violations"].as_array().unwrap().iter())
        .map(|x| x["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn mirror_problems(v: &Value) -> usize {
    v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mirror_problems"].as_array().unwrap().len())
        .sum()
}

#[track_caller]
fn assert_detects(v: &Value, code: i32, kind: &str) {
    assert_eq!(code, 1, "exit status for {kind}");
    assert_eq!(v["clean"], false);
    assert!(
        kinds(v).contains(kind),
        "expected {kind}, got {:?}",
        kinds(v)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// Rewrites bundle 0 of the mirror at `dir` with `f` applied to its entries.
fn edit_bundle(dir: &Path, f: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let path = dir.join("tile/entries/000");
    let data = std::fs::read(&path).unwrap();
    let mut entries: Vec<Vec<u8>> = parse_entry_bundle(&data)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    f(&mut entries);
    std::fs::write(&path, encode_entry_bundle(&entries).unwrap()).unwrap();
}

/// Applies `f` to every checkpoint file of the mirror.
fn edit_checkpoints(dir: &Path, f: impl Fn(&str) -> String) {
    let mut files = vec![dir.join("checkpoint")];
    for e in std::fs::read_dir(dir.join("checkpoints")).unwrap() {
        files.push(e.unwrap().path());
    }
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, f(&text)).unwrap();
    }
}

/// The index (in bundle 0) of an envelope whose sender sends again later in the bundle.
fn middle_envelope(entries: &[Vec<u8>]) -> usize {
    let from = |i: usize| {
        SignedEnvelope::decode_header(&entries[i])
            .ok()
            .map(|e| e.body().from.clone())
    };
    let n = entries.len().min(256);
    (n / 2..n)
        .find(|&i| from(i).is_some() && (i + 1..n).any(|j| from(j) == from(i)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_replay_report_and_the_tamper_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = synth::generate(&spec(90, vec![])).unwrap();
    assert!(ledger.entries.len() > 256, "two bundles at least");
    let node = serve(0, &ledger, None, tmp.path()).await;
    let url = format!("http://{}", node.local_addr());
    let genesis = write_genesis(&ledger, tmp.path());
    let m = tmp.path().join("mirror");

    // Fetch, then fetch again: everything is already held.
    let (code, out, err) = run(vec![
        "audit".into(),
        "fetch".into(),
        url.clone(),
        s(&m),
        "--json".into(),
        "--min-cosignatures".into(),
        "1".into(),
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    let f: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["size"], ledger.entries.len() as u64);
    assert!(f["downloaded"].as_u64().unwrap() >= 4);
    assert_eq!(f["roster_epochs"], serde_json::json!([1, 2]));
    let (code, out, _) = run(vec![
        "audit".into(),
        "fetch".into(),
        url.clone(),
        s(&m),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, 0);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["downloaded"], 0);
    assert_eq!(again["skipped"], f["downloaded"]);
    // A damaged file is noticed and downloaded again.
    std::fs::write(m.join("tile/0/000"), b"garbage").unwrap();
    let (code, out, _) = run(vec![
        "audit".into(),
        "fetch".into(),
        url.clone(),
        s(&m),
        "--json".into(),
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    let healed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(healed["refetched"], 1);

    // A clean replay: from the mirror and straight from the URL, text and JSON.
    let (code, v) = replay_json(&[&m], &genesis).await;
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["clean"], true);
    assert_eq!(v["findings"], 0);
    let log = &v["logs"][0];
    assert_eq!(log["entries"], ledger.entries.len() as u64);
    assert_eq!(log["signatures_verified"], log["envelopes"]);
    assert_eq!(log["roster_epoch"], 2);
    let mut args = vec!["audit".into(), "replay".into(), url.clone()];
    args.extend(trust(&genesis));
    let (code, out, err) = run(args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("verified: no violation"), "{out}");
    // Without the witness key the quorum cannot be checked: an error, not a verdict.
    let (code, _, err) = run(vec!["audit".into(), "replay".into(), s(&m)]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--witness"), "{err}");

    // ---- The tamper corpus, on copies of the mirror -----------------------------------
    let bundle0: Vec<Vec<u8>> = ledger.entries[..256].to_vec();
    let k = middle_envelope(&bundle0);
    let case = |name: &str| {
        let d = tmp.path().join(name);
        copy_dir(&m, &d);
        d
    };

    // Edited entry: a flipped signature byte.
    let d = case("edited");
    edit_bundle(&d, |e| *e[k].last_mut().unwrap() ^= 1);
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_detects(&v, code, "root-mismatch");
    assert_detects(&v, code, "bad-signature");
    let bad = v["logs"][0]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "bad-signature")
        .unwrap();
    assert_eq!(bad["position"], k as u64);
    assert!(bad["evidence"]["header"].is_string());
    assert!(bad["inclusion_proof"]["hashes"].is_array());
    assert!(mirror_problems(&v) > 0, "the level-0 tile disagrees too");

    // Dropped entry.
    let d = case("dropped");
    edit_bundle(&d, |e| {
        e.remove(k);
    });
    let (code, v) = replay_json(&[&d], &genesis).await;
    // One entry short of the checkpoint, and a hole in its sender's chain.
    assert_detects(&v, code, "truncated");
    assert_detects(&v, code, "chain-gap");
    assert!(mirror_problems(&v) > 0, "the bundle is one entry short");

    // Reordered entries.
    let d = case("reordered");
    edit_bundle(&d, |e| e.swap(k, k + 1));
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_detects(&v, code, "root-mismatch");

    // Truncated log: the last bundle is gone.
    let d = case("truncated");
    let last = (ledger.entries.len() - 1) / 256;
    for e in std::fs::read_dir(d.join("tile/entries")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{last:03}"))
        {
            std::fs::remove_dir_all(&p)
                .or_else(|_| std::fs::remove_file(&p))
                .unwrap();
        }
    }
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_detects(&v, code, "truncated");

    // An edited hash tile: the entries are intact, the mirror is not.
    let d = case("tile");
    let p = d.join("tile/0/000");
    let mut t = std::fs::read(&p).unwrap();
    t[40] ^= 1;
    std::fs::write(&p, t).unwrap();
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_eq!(code, 1);
    assert!(kinds(&v).is_empty() && mirror_problems(&v) > 0, "{v:#}");

    // Forged cosignature: one base64 character of the cosignature changed.
    let sig_line = |text: &str| -> String {
        text.lines()
            .find(|l| l.starts_with("\u{2014} ") && l.contains("/w1/witness"))
            .unwrap()
            .to_owned()
    };
    let d = case("forged-cosignature");
    edit_checkpoints(&d, |text| {
        let line = sig_line(text);
        let mut forged: Vec<char> = line.chars().collect();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
        text.replace(&line, &forged.into_iter().collect::<String>())
    });
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_detects(&v, code, "cosignature-invalid");

    // Missing cosignature.
    let d = case("missing-cosignature");
    edit_checkpoints(&d, |text| text.replace(&(sig_line(text) + "\n"), ""));
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_detects(&v, code, "quorum-not-met");

    // Split view: the log signed another root for the same size.
    let d = case("split-view");
    let log = Ed25519Signer::new(&log_origin(FED, "c0"), log_key(0)).unwrap();
    let size = ledger.entries.len() as u64;
    let mut other = TreeBuilder::new();
    for e in ledger.entries.iter().rev() {
        other.push_entry(e);
    }
    let mut fork = Checkpoint::new(&log_origin(FED, "c0"), size, other.root())
        .unwrap()
        .sign(&log)
        .unwrap();
    fork.note_mut()
        .sign(&TimestampedCosigner {
            cosigner: &witness(),
            timestamp: synth::T0 / 1000,
        })
        .unwrap();
    std::fs::write(d.join("checkpoints/fork"), fork.to_bytes()).unwrap();
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_detects(&v, code, "split-view");

    // A swapped checkpoint: signed by another key under the log's name.
    let d = case("swapped-checkpoint");
    let impostor = Ed25519Signer::new(&log_origin(FED, "c0"), dalek(99)).unwrap();
    let swapped = Checkpoint::new(&log_origin(FED, "c0"), size, other.root())
        .unwrap()
        .sign(&impostor)
        .unwrap();
    std::fs::remove_dir_all(d.join("checkpoints")).unwrap();
    std::fs::write(d.join("checkpoint"), swapped.to_bytes()).unwrap();
    let (code, v) = replay_json(&[&d], &genesis).await;
    assert_detects(&v, code, "checkpoint-bad-signature");

    // ---- The report -------------------------------------------------------------------
    let mut args = vec![
        "audit".into(),
        "report".into(),
        s(&m),
        "--format".into(),
        "json".into(),
    ];
    args.extend(trust(&genesis));
    let (code, out, err) = run(args).await;
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    check_report(&ledger, &r);
    for (format, needle) in [
        ("table", "Stalled copies"),
        ("csv", "sender,recipient,content_id"),
        ("html", "<svg"),
    ] {
        let mut args = vec![
            "audit".into(),
            "report".into(),
            s(&m),
            "--format".into(),
            format.into(),
        ];
        args.extend(trust(&genesis));
        let (code, out, err) = run(args).await;
        assert_eq!(code, 0, "{format}: {err}");
        assert!(out.contains(needle), "{format}: {out}");
        let (doc, recipient) = ledger.stalled.iter().next().unwrap();
        assert!(out.contains(&doc.to_string()) && out.contains(recipient.as_str()));
    }
    node.shutdown().await;
}

/// The report's figures against what the generator produced.
fn check_report(ledger: &Ledger, r: &Value) {
    let agencies = r["agencies"].as_array().unwrap();
    assert_eq!(agencies.len(), ledger.expected.len());
    for (id, e) in &ledger.expected {
        let a = agencies
            .iter()
            .find(|a| a["id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(a["sent"], e.sent, "{id} sent");
        assert_eq!(a["copies_sent"], e.copies_sent, "{id} copies");
        assert_eq!(a["received"], e.received, "{id} received");
        assert_eq!(a["unacknowledged"], e.unacknowledged, "{id} unacknowledged");
        assert_eq!(a["past_due"], e.past_due, "{id} past due");
        for (key, values) in [
            ("to_arrived", &e.arrived),
            ("to_accepted", &e.accepted),
            ("to_completed", &e.completed),
        ] {
            let t = &a[key];
            assert_eq!(t["count"], values.len() as u64, "{id} {key}");
            if let Some(max) = values.iter().max() {
                assert_eq!(t["max_ms"], *max, "{id} {key} max");
                let mut sorted = values.clone();
                sorted.sort_unstable();
                let rank = (sorted.len() as f64 * 0.5).ceil() as usize;
                let exact = sorted[rank.max(1) - 1] as f64;
                let p50 = t["p50_ms"].as_u64().unwrap() as f64;
                assert!(
                    (p50 - exact).abs() <= exact * 0.04,
                    "{id} {key} p50 {p50} vs {exact}"
                );
            }
        }
    }
    let stalled: BTreeSet<(String, String)> = r["stalled"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["content_id"].as_str().unwrap().to_owned(),
                x["recipient"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ledger
        .stalled
        .iter()
        .map(|(d, a)| (d.to_string(), a.to_string()))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(stalled, expected);
    assert_eq!(r["stalled_total"], expected.len() as u64);
    let silent = synth::agency_id(5).to_string();
    assert_eq!(r["never_acknowledged"], serde_json::json!([silent]));
    // Per level: the sums of the agencies.
    let levels = r["levels"].as_array().unwrap();
    let sent: u64 = levels.iter().map(|l| l["sent"].as_u64().unwrap()).sum();
    assert_eq!(sent, ledger.expected.values().map(|e| e.sent).sum::<u64>());
    assert!(levels.len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_agencies_are_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = synth::generate(&spec(
        30,
        vec![
            Inject::NonRecipientStatus,
            Inject::Equivocation,
            Inject::RevokedSender,
        ],
    ))
    .unwrap();
    assert_eq!(ledger.injected.len(), 3);
    let node = serve(0, &ledger, None, tmp.path()).await;
    let genesis = write_genesis(&ledger, tmp.path());
    let m = tmp.path().join("mirror");
    let (code, _, err) = run(vec![
        "audit".into(),
        "fetch".into(),
        format!("http://{}", node.local_addr()),
        s(&m),
    ])
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, v) = replay_json(&[&m], &genesis).await;
    for kind in ["status-from-non-party", "equivocation", "sender-not-active"] {
        assert_detects(&v, code, kind);
    }
    let violations = v["logs"][0]["violations"].as_array().unwrap();
    for (inject, index) in &ledger.injected {
        let kind = match inject {
            Inject::NonRecipientStatus => "status-from-non-party",
            Inject::Equivocation => "equivocation",
            Inject::RevokedSender => "sender-not-active",
        };
        assert!(
            violations
                .iter()
                .any(|x| x["kind"] == kind && x["position"] == *index as u64),
            "{kind} at {index}"
        );
    }
    let eq = violations
        .iter()
        .find(|x| x["kind"] == "equivocation")
        .unwrap();
    assert!(
        eq["evidence"]["first_header"].is_string() && eq["evidence"]["second_header"].is_string()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_omits_an_entry_is_caught_by_its_chain_and_the_cross_check() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = synth::generate(&spec(40, vec![])).unwrap();
    let k = middle_envelope(&ledger.entries);
    let full = serve(0, &ledger, None, tmp.path()).await;
    let censored = serve(1, &ledger, Some(k), tmp.path()).await;
    let genesis = write_genesis(&ledger, tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for (node, dir) in [(&full, &a), (&censored, &b)] {
        let (code, _, err) = run(vec![
            "audit".into(),
            "fetch".into(),
            format!("http://{}", node.local_addr()),
            s(dir),
        ])
        .await;
        assert_eq!(code, 0, "{err}");
    }
    let (code, v) = replay_json(&[&a, &b], &genesis).await;
    assert_detects(&v, code, "chain-gap");
    assert_eq!(v["logs"][0]["clean"], true, "{:#}", v["logs"][0]);
    assert_eq!(v["logs"][1]["clean"], false);
    let missing = v["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{missing:#?}");
    let id = SignedEnvelope::decode_header(&ledger.entries[k])
        .unwrap()
        .id();
    assert_eq!(missing[0]["key"], id.to_string());
    assert_eq!(missing[0]["absent_from"], serde_json::json!([s(&b)]));
    assert_eq!(missing[0]["found_at"], k as u64);
    full.shutdown().await;
    censored.shutdown().await;
}
