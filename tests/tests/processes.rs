//! The real `lienthong` and `lienthong-bootstrap` binaries, one process per node, driven
//! through the HTTP API as a DMS would: delivery with the full status chain; the devnet's
//! whole walk-through (reply, store-and-forward with sender and recipient offline, a
//! central node down, a recall, a revoked agency refused, the audit replay clean and
//! failing on a tampered copy); and a crash loop that SIGKILLs agency and central nodes at
//! random moments while documents flow, then checks that every acknowledged document was
//! delivered exactly once and that the ledgers verify.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::panic
)]

use std::collections::HashMap;
use std::time::Duration;

use lienthong_protocol::agency::AgencyId;
use lienthong_tests::{Federation, HarnessError, binary, devnet, wait_until};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// How long a node may take to answer ready. Alone, one does in well under a second, and a
/// few seconds on 2 loaded cores; the bound is for a machine also busy building or
/// writing (each node's store opens with dozens of fsyncs). A node that exits is reported
/// at once, whatever the bound.
const READY: Duration = Duration::from_secs(120);
const DELIVERED: Duration = Duration::from_secs(120);

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
}

/// A node that cannot start is reported as exited, with the end of its log naming why,
/// not as one that was not ready by the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_start_is_reported_with_its_log() {
    let mut fed = Federation::generate(12, &[&["000.00.00.G01"]]).unwrap();
    std::fs::write(fed.nodes[0].dir.join("config.toml"), "not = [toml").unwrap();
    match fed.start(0, READY).await {
        Err(HarnessError::Exited { log, .. }) => {
            assert!(log.contains("config"), "the log does not say why: {log}");
        }
        other => panic!("expected the node to be reported as exited, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_and_its_whole_status_chain_cross_between_processes() {
    let mut fed = Federation::generate(11, &[&["000.00.00.G01"], &["000.00.00.H41"]]).unwrap();
    fed.start(0, READY).await.unwrap();
    fed.start(1, READY).await.unwrap();
    let b = agency("000.00.00.H41");

    let id = fed
        .send(
            0,
            std::slice::from_ref(&b),
            "Về việc kiểm thử đa tiến trình",
        )
        .await
        .unwrap();
    let fed_ref = &fed;
    wait_until("B's inbox lists the document", DELIVERED, || async {
        fed_ref.inbox(1).await.unwrap().contains(&id)
    })
    .await
    .unwrap();
    for code in ["03", "04", "05", "06"] {
        let (status, answer) = fed.status(1, &id, code).await.unwrap();
        assert!((200..300).contains(&status), "{code}: {status} {answer}");
    }
    let want = ["01", "03", "04", "05", "06"];
    wait_until("A traces B's whole chain", DELIVERED, || async {
        fed_ref.trace(0, &id, &b).await.unwrap() == want
    })
    .await
    .unwrap();
    // A refused transition is refused by the recipient's node, with a reason.
    let (status, answer) = fed.status(1, &id, "03").await.unwrap();
    assert_eq!(status, 409, "{answer}");
    assert_eq!(fed.inbox(1).await.unwrap(), vec![id]);
}

/// Runs `lienthong audit <args>`: success, and standard output and error.
fn audit(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(binary("lienthong").unwrap())
        .arg("audit")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_walk_through_passes_and_a_tampered_ledger_copy_fails_replay() {
    let mut fed = devnet::generate(7).unwrap();
    devnet::start_all(&mut fed).await.unwrap();
    let mut narration = Vec::new();
    let summary = devnet::walk(&mut fed, &mut |line| narration.push(line.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", narration.join("\n")));
    assert_eq!(summary.steps.len(), 8, "{}", narration.join("\n"));

    // The walk-through replayed central-b's mirror cleanly; flip one byte of an entry
    // bundle in a copy and the replay must fail.
    let mirror = fed.dir().join("audit-mirror");
    let copy = fed.dir().join("tampered-mirror");
    copy_dir(&mirror, &copy);
    let bundle = find_entry_bundle(&copy).expect("the mirror holds an entry bundle");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&bundle, bytes).unwrap();
    let replay = |dir: &std::path::Path| {
        let mut args = vec!["replay".to_owned(), dir.to_str().unwrap().to_owned()];
        for key in &fed.witness_keys {
            args.extend(["--witness".to_owned(), key.clone()]);
        }
        audit(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (clean, text) = replay(&mirror);
    assert!(clean, "{text}");
    let (clean, text) = replay(&copy);
    assert!(!clean, "a tampered copy replayed cleanly: {text}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A file under `tile/entries/` (C2SP tlog-tiles entry bundles), the largest one.
fn find_entry_bundle(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut found: Option<(u64, std::path::PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains("/entries/") {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if found.as_ref().is_none_or(|(l, _)| len > *l) {
                    found = Some((len, path));
                }
            }
        }
    }
    found.map(|(_, p)| p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let kills: usize = std::env::var("LIENTHONG_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut fed = Federation::generate_with(
        12,
        2,
        &[
            ("ministry", &[("000.00.00.G01", "Ministry")]),
            ("province", &[("000.00.00.H41", "Province")]),
        ],
    )
    .unwrap();
    for i in 0..2 {
        fed.start_central(i, READY).await.unwrap();
        fed.start(i, READY).await.unwrap();
    }
    let b = agency("000.00.00.H41");
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let mut central_kills = 0usize;
    let mut acknowledged = Vec::new();
    let mut refused_while_down = 0usize;
    let mut slowest_restart = Duration::ZERO;

    for kill in 0..kills {
        // A few documents, acknowledged durably by the sender's node.
        for n in 0..1 + rng.next_u32() % 3 {
            acknowledged.push(
                fed.send(0, std::slice::from_ref(&b), &format!("Văn bản {kill}-{n}"))
                    .await
                    .unwrap(),
            );
        }
        // Kill the sender (deliveries in flight), the recipient (mid-delivery), or one of
        // the central nodes (custody, the ledger).
        let victim = usize::try_from(rng.next_u32() % 4).unwrap();
        if victim >= 2 {
            let central = victim - 2;
            fed.centrals[central].kill();
            acknowledged.push(
                fed.send(
                    0,
                    std::slice::from_ref(&b),
                    &format!("Khi nút trung tâm {central} dừng {kill}"),
                )
                .await
                .unwrap(),
            );
            let took = fed.start_central(central, READY).await.unwrap();
            slowest_restart = slowest_restart.max(took);
            central_kills += 1;
            continue;
        }
        fed.nodes[victim].kill();
        // While the recipient is down the sender keeps accepting; while the sender is down
        // nothing can be acknowledged.
        match fed
            .send(
                0,
                std::slice::from_ref(&b),
                &format!("Khi nút {victim} dừng {kill}"),
            )
            .await
        {
            Ok(id) => acknowledged.push(id),
            Err(_) => refused_while_down += 1,
        }
        let took = fed.start(victim, READY).await.unwrap();
        slowest_restart = slowest_restart.max(took);
    }

    let fed_ref = &fed;
    let want = acknowledged.clone();
    let healed = std::time::Instant::now();
    wait_until(
        "every acknowledged document is in B's inbox",
        DELIVERED,
        || {
            let want = want.clone();
            async move {
                let inbox = fed_ref.inbox(1).await.unwrap();
                want.iter().all(|id| inbox.contains(id))
            }
        },
    )
    .await
    .unwrap();
    let inbox = fed.inbox(1).await.unwrap();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &inbox {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let duplicates = counts.values().filter(|n| **n > 1).count();
    let losses = acknowledged
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .count();
    println!(
        "crash loop: kills {kills} ({central_kills} of central nodes), documents acknowledged {}, \
         sends refused while the sender was down {refused_while_down}, losses {losses}, \
         duplicates {duplicates}, slowest restart to ready {slowest_restart:?}, \
         all delivered {:?} after the last restart",
        acknowledged.len(),
        healed.elapsed()
    );
    assert_eq!(losses, 0);
    assert_eq!(duplicates, 0);
    assert_eq!(
        fed.nodes
            .iter()
            .chain(&fed.centrals)
            .map(|n| n.starts())
            .sum::<usize>(),
        kills + 4
    );

    // Both ledgers verify after the crashes.
    for central in &fed.centrals {
        let mirror = fed.dir().join(format!("mirror-{}", central.name));
        let mirror = mirror.to_str().unwrap();
        let (ok, text) = audit(&[
            "fetch",
            &central.api,
            mirror,
            "--min-cosignatures",
            "1",
            "--json",
        ]);
        assert!(ok, "fetching {}: {text}", central.name);
        let mut args = vec!["replay", mirror];
        for key in &fed.witness_keys {
            args.extend(["--witness", key.as_str()]);
        }
        let (ok, text) = audit(&args);
        assert!(ok, "replaying {}: {text}", central.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_a_third_of_the_federation_heals_and_everything_arrives() {
    use lienthong_tests::netns::Netns;
    if let Some(why) = Netns::unavailable() {
        // CI (scripts/test) sets LIENTHONG_REQUIRE_NETNS: there a skip is a failure.
        assert!(
            std::env::var_os("LIENTHONG_REQUIRE_NETNS").is_none(),
            "the partition test must run here but cannot: {why}"
        );
        println!("SKIPPED: the partition test needs network namespaces: {why}");
        return;
    }
    let cut_secs: u64 = std::env::var("LIENTHONG_PARTITION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // 12 nodes: 2 central nodes and 10 agency nodes, of which 4 are cut off (30 %).
    const CENTRAL: usize = 2;
    let codes: Vec<String> = (1..=10)
        .map(|i| format!("000.00.00.H{:02}", 10 + i))
        .collect();
    let names: Vec<String> = (0..10).map(|i| format!("province-{i}")).collect();
    let tenants: Vec<[(&str, &str); 1]> =
        codes.iter().map(|c| [(c.as_str(), "Province")]).collect();
    let specs: Vec<(&str, &[(&str, &str)])> = names
        .iter()
        .zip(&tenants)
        .map(|(n, t)| (n.as_str(), &t[..]))
        .collect();
    let netns = Netns::create(CENTRAL + specs.len()).unwrap();
    let mut fed = Federation::generate_in(21, CENTRAL, &specs, Some(netns)).unwrap();
    for i in 0..CENTRAL {
        fed.start_central(i, READY).await.unwrap();
    }
    for i in 0..specs.len() {
        fed.start(i, READY).await.unwrap();
    }
    let ids: Vec<AgencyId> = codes.iter().map(|c| agency(c)).collect();
    // Agency nodes 0..4 are cut off; their namespaces are CENTRAL + i.
    let cut: Vec<usize> = (0..4).collect();
    let cut_ns: Vec<usize> = cut.iter().map(|i| CENTRAL + i).collect();
    let rest_ns: Vec<usize> = (0..CENTRAL).chain(CENTRAL + 4..CENTRAL + 10).collect();

    // Before: everyone reaches everyone.
    let mut sent: Vec<(usize, String)> = Vec::new();
    for from in 0..10 {
        let to = (from + 5) % 10;
        sent.push((
            to,
            fed.send(
                from,
                std::slice::from_ref(&ids[to]),
                &format!("Trước {from}"),
            )
            .await
            .unwrap(),
        ));
    }
    let netns = fed.netns.as_ref().unwrap();
    netns.cut(&cut_ns, &rest_ns).unwrap();
    // During the cut, each node keeps sending, across the cut and within each side.
    let cut_started = std::time::Instant::now();
    let mut round = 0;
    let mut across: Vec<(usize, String)> = Vec::new();
    while cut_started.elapsed() < Duration::from_secs(cut_secs) {
        for from in 0..10 {
            for to in [(from + 1) % 10, (from + 5) % 10] {
                let id = fed
                    .send(
                        from,
                        std::slice::from_ref(&ids[to]),
                        &format!("Khi bị chia cắt {round}-{from}-{to}"),
                    )
                    .await
                    .unwrap();
                if cut.contains(&from) != cut.contains(&to) {
                    across.push((to, id.clone()));
                }
                sent.push((to, id));
            }
        }
        round += 1;
    }
    // The cut held: nothing sent across it has arrived (each inbox is read through the
    // harness from outside the namespaces).
    assert!(!across.is_empty());
    for node in 0..10 {
        let inbox = fed.inbox(node).await.unwrap();
        let leaked: Vec<&String> = across
            .iter()
            .filter(|(to, id)| *to == node && inbox.contains(id))
            .map(|(_, id)| id)
            .collect();
        assert!(
            leaked.is_empty(),
            "documents crossed the cut to node {node}: {leaked:?}"
        );
    }
    let netns = fed.netns.as_ref().unwrap();
    netns.heal(&cut_ns).unwrap();
    let healed = std::time::Instant::now();
    let fed_ref = &fed;
    let sent_ref = &sent;
    wait_until(
        "every document sent before, during and after the cut arrives",
        DELIVERED,
        || async move {
            for node in 0..10 {
                let inbox = fed_ref.inbox(node).await.unwrap_or_default();
                if !sent_ref
                    .iter()
                    .filter(|(to, _)| *to == node)
                    .all(|(_, id)| inbox.contains(id))
                {
                    return false;
                }
            }
            true
        },
    )
    .await
    .unwrap();
    let took = healed.elapsed();
    let mut duplicates = 0;
    for node in 0..10 {
        let inbox = fed.inbox(node).await.unwrap();
        let mut seen = std::collections::HashSet::new();
        duplicates += inbox.iter().filter(|id| !seen.insert(id.as_str())).count();
    }
    println!(
        "partition: 12 nodes, {} cut off for {cut_secs} s ({} % of the nodes), {} documents, all delivered {:.2} s after healing, duplicates {duplicates}",
        cut.len(),
        cut.len() * 100 / 12,
        sent.len(),
        took.as_secs_f64()
    );
    assert_eq!(duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_central_nodes_one_stopped_every_log_gets_every_entry_cosigned_by_the_other_two() {
    let mut fed = Federation::generate_with(
        31,
        3,
        &[
            ("ministry", &[("000.00.00.G01", "Ministry")]),
            ("province", &[("000.00.00.H41", "Province")]),
        ],
    )
    .unwrap();
    for i in 0..3 {
        fed.start_central(i, READY).await.unwrap();
    }
    for i in 0..2 {
        fed.start(i, READY).await.unwrap();
    }
    let (a, b) = (agency("000.00.00.G01"), agency("000.00.00.H41"));
    let mut sent = vec![
        fed.send(0, std::slice::from_ref(&b), "Trước khi dừng")
            .await
            .unwrap(),
    ];

    // central-a stops mid-run; documents and statuses go on.
    fed.centrals[0].kill();
    for n in 0..5 {
        sent.push(
            fed.send(0, std::slice::from_ref(&b), &format!("Khi dừng {n}"))
                .await
                .unwrap(),
        );
        sent.push(
            fed.send(1, std::slice::from_ref(&a), &format!("Trả lời {n}"))
                .await
                .unwrap(),
        );
    }
    let fed_ref = &fed;
    wait_until("both inboxes hold everything", DELIVERED, || async {
        let (ia, ib) = (
            fed_ref.inbox(0).await.unwrap(),
            fed_ref.inbox(1).await.unwrap(),
        );
        sent.iter().all(|id| ia.contains(id) || ib.contains(id))
    })
    .await
    .unwrap();
    fed.start_central(0, READY).await.unwrap();

    // A roster epoch signed by fewer than k (1 of 2) is refused by the central nodes.
    let weak = fed
        .generated
        .next_epoch(&fed.generated.roster, &[1], |_| {})
        .unwrap()
        .to_bytes()
        .unwrap();
    let (status, answer) = fed.publish_roster(1, weak).await.unwrap();
    assert!((400..500).contains(&status), "{status} {answer}");

    // Every log catches up to the same entries, and its latest checkpoint carries the
    // cosignatures of the other two (log signature + 2).
    let fed_ref = &fed;
    wait_until(
        "every log is cosigned by the other two and of one size",
        DELIVERED,
        || async {
            let mut sizes = Vec::new();
            for i in 0..3 {
                let status = fed_ref.central_status(i).await.unwrap_or_default();
                if status["checkpoint_signatures"].as_u64() != Some(3) {
                    return false;
                }
                sizes.push(status["checkpoint_size"].as_u64().unwrap_or(0));
            }
            sizes.windows(2).all(|w| w[0] == w[1])
        },
    )
    .await
    .unwrap();
    // Cross-checked replay of the three mirrors: no entry missing from any log.
    let mut mirrors = Vec::new();
    for central in &fed.centrals {
        let mirror = fed.dir().join(format!("mirror-{}", central.name));
        let (ok, text) = audit(&[
            "fetch",
            &central.api,
            mirror.to_str().unwrap(),
            "--min-cosignatures",
            "2",
            "--json",
        ]);
        assert!(ok, "fetching {}: {text}", central.name);
        mirrors.push(mirror.to_str().unwrap().to_owned());
    }
    let mut args: Vec<&str> = vec!["replay"];
    args.extend(mirrors.iter().map(String::as_str));
    args.extend(["--quorum", "2"]);
    for key in &fed.witness_keys {
        args.extend(["--witness", key.as_str()]);
    }
    let (ok, text) = audit(&args);
    assert!(ok, "{text}");
}
