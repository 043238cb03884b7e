//! The devnet: a whole federation on loopback (3 central nodes, a ministry, two provinces, a
//! district and a commune of one province, and a provincial shared platform hosting two
//! tenants) and the walk-through of the mission, every step checked: delivery with an
//! attachment, the status chain, a reply, store-and-forward to a commune that was down, a
//! central node down, a recall, a revocation by a k-of-n roster change, and the audit.

use std::time::{Duration, Instant};

use lienthong_protocol::roster::AgencyState;
use serde_json::{Value, json};

use crate::{AgencyNodeSpec, Federation, HarnessError, binary, wait_until};

/// Agency node indices in [`NODES`].
pub const MINISTRY: usize = 0;
pub const PROVINCE_A: usize = 1;
pub const PROVINCE_B: usize = 2;
pub const DISTRICT: usize = 3;
pub const COMMUNE: usize = 4;
pub const PLATFORM: usize = 5;

/// The agency nodes: label and tenants (agency code, official name).
pub const NODES: [AgencyNodeSpec<'static>; 6] = [
    ("bo-noi-vu", &[("000.00.00.G22", "Bộ Nội vụ")]),
    ("ubnd-nghe-an", &[("000.00.00.H40", "UBND tỉnh Nghệ An")]),
    ("ubnd-ha-tinh", &[("000.00.00.H42", "UBND tỉnh Hà Tĩnh")]),
    (
        "ubnd-huyen-nam-dan",
        &[("000.00.12.H40", "UBND huyện Nam Đàn")],
    ),
    ("ubnd-xa-kim-lien", &[("000.05.12.H40", "UBND xã Kim Liên")]),
    (
        "nen-tang-ha-tinh",
        &[
            ("000.00.01.H42", "Sở Nội vụ tỉnh Hà Tĩnh"),
            ("000.00.02.H42", "Sở Tài chính tỉnh Hà Tĩnh"),
        ],
    ),
];

/// Central nodes.
pub const CENTRAL: usize = 3;

/// How long one step may wait for the federation.
const STEP: Duration = Duration::from_secs(60);

/// A step of the walk-through that did not do what it should.
#[derive(Debug, thiserror::Error)]
#[error("step \"{step}\" failed: {detail}")]
pub struct StepFailed {
    pub step: &'static str,
    pub detail: String,
}

fn failed(step: &'static str) -> impl Fn(HarnessError) -> StepFailed {
    move |e| StepFailed {
        step,
        detail: e.to_string(),
    }
}

fn check(step: &'static str, ok: bool, detail: impl FnOnce() -> String) -> Result<(), StepFailed> {
    if ok {
        Ok(())
    } else {
        Err(StepFailed {
            step,
            detail: detail(),
        })
    }
}

/// Generates the devnet's federation (nothing started).
pub fn generate(seed: u64) -> Result<Federation, HarnessError> {
    Federation::generate_with(seed, CENTRAL, &NODES)
}

/// Starts every central node, then every agency node, each once ready.
pub async fn start_all(fed: &mut Federation) -> Result<(), HarnessError> {
    for i in 0..fed.centrals.len() {
        fed.start_central(i, STEP).await?;
    }
    for i in 0..fed.nodes.len() {
        fed.start(i, STEP).await?;
    }
    Ok(())
}

/// What the walk-through measured, for its summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub steps: Vec<(&'static str, Duration)>,
}

/// Runs the walk-through on a started devnet, narrating each step through `say`; stops at
/// the first step that does not do what it should.
pub async fn walk(fed: &mut Federation, say: &mut dyn FnMut(&str)) -> Result<Summary, StepFailed> {
    let mut summary = Summary::default();
    let mut timed = Instant::now();
    let mut done = |summary: &mut Summary, step: &'static str, say: &mut dyn FnMut(&str)| {
        let took = timed.elapsed();
        say(&format!("  ✔ {step} ({:.1} s)", took.as_secs_f64()));
        summary.steps.push((step, took));
        timed = Instant::now();
    };
    let agency = |node: usize, tenant: usize| fed.nodes[node].tenant_at(tenant).0.clone();
    let (ministry, province_a, province_b) = (
        agency(MINISTRY, 0),
        agency(PROVINCE_A, 0),
        agency(PROVINCE_B, 0),
    );
    let (district, commune) = (agency(DISTRICT, 0), agency(COMMUNE, 0));
    let revoked = agency(PLATFORM, 1);

    // 1. A ministry sends a document with an attachment to both provinces.
    let step = "a ministry sends to both provinces";
    say(&format!(
        "1. {ministry} (Bộ Nội vụ) sends a decision with a PDF attachment to {province_a} and {province_b}"
    ));
    let document = fed
        .send(
            MINISTRY,
            &[province_a.clone(), province_b.clone()],
            "Quyết định về việc tổ chức hội nghị",
        )
        .await
        .map_err(failed(step))?;
    say(&format!(
        "   content id {document}: durable at the ministry's node"
    ));
    for node in [PROVINCE_A, PROVINCE_B] {
        wait_until("the province's inbox lists the document", STEP, || async {
            fed.inbox(node)
                .await
                .is_ok_and(|ids| ids.contains(&document))
        })
        .await
        .map_err(failed(step))?;
    }
    for recipient in [&province_a, &province_b] {
        wait_until(
            "the ministry holds the province's 01 (arrived)",
            STEP,
            || async {
                fed.trace(MINISTRY, &document, recipient)
                    .await
                    .is_ok_and(|t| t.first().is_some_and(|c| c == "01"))
            },
        )
        .await
        .map_err(failed(step))?;
    }
    say("   both provinces have it; each node signed a 01 (arrived) back to the ministry");
    done(&mut summary, step, say);

    // 2. The status chain.
    let step = "the status chain 01→03→04→05→06";
    say(&format!(
        "2. {province_a} accepts (03), assigns (04), processes (05) and completes (06)"
    ));
    for code in ["03", "04", "05", "06"] {
        let (status, answer) = fed
            .status(PROVINCE_A, &document, code)
            .await
            .map_err(failed(step))?;
        check(step, (200..300).contains(&status), || {
            format!("posting {code}: {status} {answer}")
        })?;
    }
    let want = ["01", "03", "04", "05", "06"];
    wait_until("the ministry traces the whole chain", STEP, || async {
        fed.trace(MINISTRY, &document, &province_a)
            .await
            .is_ok_and(|t| t == want)
    })
    .await
    .map_err(failed(step))?;
    say("   the ministry's trace shows 01 → 03 → 04 → 05 → 06 for Nghệ An");
    done(&mut summary, step, say);

    // 3. A reply document (ResponseFor).
    let step = "a province replies (ResponseFor)";
    say(&format!(
        "3. {province_b} accepts (03) and sends a reply document answering the decision"
    ));
    let (status, answer) = fed
        .status(PROVINCE_B, &document, "03")
        .await
        .map_err(failed(step))?;
    check(step, (200..300).contains(&status), || {
        format!("posting 03: {status} {answer}")
    })?;
    let reference = json!({
        "document_id": format!("{ministry},Quyết định về việc tổ chức hội nghị"),
        "organ_id": ministry.as_str(),
    });
    let (status, answer) = fed
        .try_send(
            PROVINCE_B,
            0,
            std::slice::from_ref(&ministry),
            "Báo cáo kết quả thực hiện",
            Some(reference),
        )
        .await
        .map_err(failed(step))?;
    let reply = answer["id"].as_str().map(str::to_owned).unwrap_or_default();
    check(
        step,
        (200..300).contains(&status) && !reply.is_empty(),
        || format!("{status} {answer}"),
    )?;
    wait_until("the ministry's inbox lists the reply", STEP, || async {
        fed.inbox(MINISTRY)
            .await
            .is_ok_and(|ids| ids.contains(&reply))
    })
    .await
    .map_err(failed(step))?;
    let (_, token) = fed.nodes[MINISTRY].tenant();
    let (status, shown) = fed
        .call(
            MINISTRY,
            "GET",
            &format!("/v1/documents/{reply}"),
            token,
            None,
        )
        .await
        .map_err(failed(step))?;
    let answers = &shown["header"]["response_for"]["document_id"];
    check(
        step,
        status == 200
            && answers
                .as_str()
                .is_some_and(|d| d.starts_with(ministry.as_str())),
        || format!("the reply as the ministry sees it: {status} {shown}"),
    )?;
    say("   the ministry received the reply, which names the decision it answers");
    done(&mut summary, step, say);

    // 4. Store-and-forward: the commune is down, then the district too.
    let step = "store-and-forward to a commune that was down";
    say(&format!(
        "4. {commune} (a commune) stops; {district} (its district) sends to it and stops too"
    ));
    fed.nodes[COMMUNE].stop();
    let notice = fed
        .send(
            DISTRICT,
            std::slice::from_ref(&commune),
            "Thông báo lịch tiếp công dân",
        )
        .await
        .map_err(failed(step))?;
    wait_until(
        "a central node holds the document in custody",
        STEP,
        || async {
            let mut held = false;
            for i in 0..fed.centrals.len() {
                held |= fed
                    .central_status(i)
                    .await
                    .is_ok_and(|s| s["custody_deliveries"].as_u64().unwrap_or(0) > 0);
            }
            held
        },
    )
    .await
    .map_err(failed(step))?;
    fed.nodes[DISTRICT].stop();
    say("   a central node took custody; both the district and the commune are now offline");
    fed.start(COMMUNE, STEP).await.map_err(failed(step))?;
    wait_until("the commune's inbox lists the notice", STEP, || async {
        fed.inbox(COMMUNE)
            .await
            .is_ok_and(|ids| ids.contains(&notice))
    })
    .await
    .map_err(failed(step))?;
    fed.start(DISTRICT, STEP).await.map_err(failed(step))?;
    wait_until("the district holds the commune's 01", STEP, || async {
        fed.trace(DISTRICT, &notice, &commune)
            .await
            .is_ok_and(|t| t.first().is_some_and(|c| c == "01"))
    })
    .await
    .map_err(failed(step))?;
    say("   the commune came back and received it from the custodian; its 01 reached the district");
    done(&mut summary, step, say);

    // 5. One central node down.
    let step = "a central node is down";
    say("5. central-a stops; the ministry sends to the district");
    fed.centrals[0].stop();
    let before = fed.central_status(1).await.map_err(failed(step))?["checkpoint_size"]
        .as_u64()
        .unwrap_or(0);
    let circular = fed
        .send(
            MINISTRY,
            std::slice::from_ref(&district),
            "Công văn hướng dẫn",
        )
        .await
        .map_err(failed(step))?;
    wait_until("the district's inbox lists the circular", STEP, || async {
        fed.inbox(DISTRICT)
            .await
            .is_ok_and(|ids| ids.contains(&circular))
    })
    .await
    .map_err(failed(step))?;
    let latest = std::cell::RefCell::new(Value::Null);
    wait_until(
        "central-b's log grows, cosigned by central-c",
        STEP,
        || async {
            let status = fed.central_status(1).await.unwrap_or(Value::Null);
            let grown = status["checkpoint_size"].as_u64().unwrap_or(0) > before
                && status["checkpoint_signatures"].as_u64().unwrap_or(0) >= 2;
            latest.replace(status);
            grown
        },
    )
    .await
    .map_err(failed(step))?;
    let latest = latest.into_inner();
    say(&format!(
        "   delivered; central-b's log went from {before} to {} entries, its checkpoint signed and cosigned",
        latest["checkpoint_size"]
    ));
    fed.start_central(0, STEP).await.map_err(failed(step))?;
    say("   central-a is back");
    done(&mut summary, step, say);

    // 6. A recall.
    let step = "a recall, an update and a replacement";
    say(&format!(
        "6. the ministry sends to {province_b} by mistake and recalls it (13); the province agrees (15)"
    ));
    let mistaken = fed
        .send(MINISTRY, std::slice::from_ref(&province_b), "Gửi nhầm")
        .await
        .map_err(failed(step))?;
    wait_until("the province holds the mistaken document", STEP, || async {
        fed.inbox(PROVINCE_B)
            .await
            .is_ok_and(|ids| ids.contains(&mistaken))
    })
    .await
    .map_err(failed(step))?;
    let (_, token) = fed.nodes[MINISTRY].tenant();
    let (status, answer) = fed
        .call(
            MINISTRY,
            "POST",
            &format!("/v1/documents/{mistaken}/recall"),
            token,
            Some(json!({ "reason": "Gửi nhầm nơi nhận" })),
        )
        .await
        .map_err(failed(step))?;
    check(step, (200..300).contains(&status), || {
        format!("recall: {status} {answer}")
    })?;
    let agreed = std::cell::RefCell::new((0, Value::Null));
    wait_until("the province can answer the recall", STEP, || async {
        let answer = fed
            .status(PROVINCE_B, &mistaken, "15")
            .await
            .unwrap_or((0, Value::Null));
        let ok = (200..300).contains(&answer.0);
        agreed.replace(answer);
        ok
    })
    .await
    .map_err(|e| {
        let (status, answer) = agreed.take();
        StepFailed {
            step,
            detail: format!("{e}; last answer to 15: {status} {answer}"),
        }
    })?;
    wait_until(
        "the ministry's trace shows the recall agreed",
        STEP,
        || async {
            fed.trace(MINISTRY, &mistaken, &province_b)
                .await
                .is_ok_and(|t| t.iter().any(|c| c == "15"))
        },
    )
    .await
    .map_err(failed(step))?;
    say("   the province agreed (15); the ministry's trace shows the document recalled");
    say(&format!(
        "   the ministry sends a plan to {province_a}, then an update of it and a replacement"
    ));
    let plan = fed
        .send(
            MINISTRY,
            std::slice::from_ref(&province_a),
            "Kế hoạch năm 2027",
        )
        .await
        .map_err(failed(step))?;
    for change in ["update", "replace"] {
        let (status, answer) = fed
            .change(
                MINISTRY,
                change,
                &plan,
                "Kế hoạch năm 2027",
                std::slice::from_ref(&province_a),
                &format!("Kế hoạch năm 2027 ({change})"),
            )
            .await
            .map_err(failed(step))?;
        let changed = answer["id"].as_str().map(str::to_owned).unwrap_or_default();
        check(
            step,
            (200..300).contains(&status) && !changed.is_empty(),
            || format!("{change}: {status} {answer}"),
        )?;
        wait_until("the province's inbox lists the change", STEP, || async {
            fed.inbox(PROVINCE_A)
                .await
                .is_ok_and(|ids| ids.contains(&plan) && ids.contains(&changed))
        })
        .await
        .map_err(failed(step))?;
    }
    say("   the province received the plan, its update and its replacement");
    done(&mut summary, step, say);

    // 7. A revocation through a k-of-n roster change.
    let step = "an agency is revoked";
    say(&format!(
        "7. root key holders 1 and 3 (2 of 3) sign roster epoch 2, which revokes {revoked}"
    ));
    let epoch2 = fed
        .generated
        .next_epoch(&fed.generated.roster, &[0, 2], |roster| {
            for entry in &mut roster.agencies {
                if entry.id == revoked {
                    entry.state = AgencyState::Revoked;
                }
            }
        })
        .and_then(|signed| signed.to_bytes())
        .map_err(|e| StepFailed {
            step,
            detail: e.to_string(),
        })?;
    let (status, answer) = fed.publish_roster(1, epoch2).await.map_err(failed(step))?;
    check(step, (200..300).contains(&status), || {
        format!("POST /roster: {status} {answer}")
    })?;
    for node in 0..fed.nodes.len() {
        wait_until("every agency node has epoch 2 in force", STEP, || async {
            fed.roster_epoch(node).await.is_ok_and(|e| e >= 2)
        })
        .await
        .map_err(failed(step))?;
    }
    let (status, answer) = fed
        .try_send(
            PLATFORM,
            1,
            std::slice::from_ref(&ministry),
            "Sau khi bị thu hồi",
            None,
        )
        .await
        .map_err(failed(step))?;
    check(step, (400..500).contains(&status), || {
        format!("the revoked agency's send was answered {status} {answer}")
    })?;
    say(&format!(
        "   every node has epoch 2; the revoked agency's send is refused: {status} {}",
        answer["detail"].as_str().unwrap_or("")
    ));
    let (status, answer) = fed
        .try_send(
            PLATFORM,
            0,
            std::slice::from_ref(&ministry),
            "Từ đơn vị cùng nền tảng",
            None,
        )
        .await
        .map_err(failed(step))?;
    check(step, (200..300).contains(&status), || {
        format!("the platform's other tenant: {status} {answer}")
    })?;
    say("   the other agency on the same shared platform still sends");
    done(&mut summary, step, say);

    // 8. The audit.
    let step = "the audit";
    say("8. an auditor mirrors central-b's ledger and replays it");
    let mirror = fed.dir().join("audit-mirror");
    let lienthong = binary("lienthong").map_err(failed(step))?;
    let url = fed.centrals[1].api.clone();
    let run = |args: &[&str]| {
        std::process::Command::new(&lienthong)
            .args(args)
            .output()
            .map_err(|e| StepFailed {
                step,
                detail: format!("running lienthong {}: {e}", args.join(" ")),
            })
    };
    let mirror_arg = mirror.to_string_lossy().into_owned();
    let fetched = run(&[
        "audit",
        "fetch",
        &url,
        &mirror_arg,
        "--min-cosignatures",
        "1",
        "--json",
    ])?;
    check(step, fetched.status.success(), || {
        String::from_utf8_lossy(&fetched.stderr).into_owned()
    })?;
    say(&format!(
        "   $ lienthong audit fetch {url} {mirror_arg} --min-cosignatures 1"
    ));
    say(&indent(&String::from_utf8_lossy(&fetched.stdout)));
    let mut replay_args = vec!["audit", "replay", &mirror_arg];
    for key in &fed.witness_keys {
        replay_args.extend(["--witness", key]);
    }
    let replay = run(&replay_args)?;
    say(
        "   $ lienthong audit replay <mirror> --witness <central-a> --witness <central-b> --witness <central-c>",
    );
    say(&indent(&String::from_utf8_lossy(&replay.stdout)));
    check(step, replay.status.success(), || {
        format!(
            "replay failed: {}{}",
            String::from_utf8_lossy(&replay.stdout),
            String::from_utf8_lossy(&replay.stderr)
        )
    })?;
    let report = run(&["audit", "report", &mirror_arg])?;
    say("   $ lienthong audit report <mirror>");
    say(&indent(&String::from_utf8_lossy(&report.stdout)));
    check(step, report.status.success(), || {
        String::from_utf8_lossy(&report.stderr).into_owned()
    })?;
    done(&mut summary, step, say);
    Ok(summary)
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("     {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
