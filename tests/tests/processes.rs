//! The real `lienthong` binary, one process per node, driven through the HTTP API as a DMS
//! would: delivery with the full status chain, and a crash loop that SIGKILLs nodes at
//! random moments while documents flow, then checks that every acknowledged document was
//! delivered exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::time::Duration;

use lienthong_protocol::agency::AgencyId;
use lienthong_tests::{Federation, wait_until};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const READY: Duration = Duration::from_secs(60);
const DELIVERED: Duration = Duration::from_secs(120);

fn agency(code: &str) -> AgencyId {
    AgencyId::parse(code).unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let kills: usize = std::env::var("LIENTHONG_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut fed = Federation::generate(12, &[&["000.00.00.G01"], &["000.00.00.H41"]]).unwrap();
    fed.start(0, READY).await.unwrap();
    fed.start(1, READY).await.unwrap();
    let b = agency("000.00.00.H41");
    let mut rng = ChaCha20Rng::seed_from_u64(12);
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
        // Kill the sender (deliveries in flight) or the recipient (mid-delivery).
        let victim = usize::try_from(rng.next_u32() % 2).unwrap();
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
        "crash loop: kills {kills}, documents acknowledged {}, sends refused while the sender was down {refused_while_down}, \
         losses {losses}, duplicates {duplicates}, slowest restart to ready {slowest_restart:?}, \
         all delivered {:?} after the last restart",
        acknowledged.len(),
        healed.elapsed()
    );
    assert_eq!(losses, 0);
    assert_eq!(duplicates, 0);
    assert_eq!(fed.nodes[0].starts() + fed.nodes[1].starts(), kills + 2);
}
