//! `lienthong audit report`: per agency and per administrative level, documents sent and
//! received, time to 01 (arrived), 03 (accepted) and 06 (completed) as p50/p90/max, copies
//! past due without 06, copies never acknowledged; and the stalled copies (sender,
//! recipient, content id, age: identifiers only, never subjects). Table, JSON, CSV or one
//! static HTML file with inline SVG charts.
//!
//! The figures come from a structure replay (no signature checks: run `audit replay` for
//! the verdict); the report says how many violations that replay saw.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use lienthong_protocol::audit::{AgencyStats, Checks, Latency, StalledCopy, Stats};
use serde::Serialize;
use serde_json::json;

use super::AuditError;
use super::replay::{ReplayOptions, Source, replay};

/// Output format of the report (also `audit report --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReportFormat {
    #[default]
    Table,
    Json,
    Csv,
    Html,
}

/// One latency as p50/p90/max (ms), `None` without values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Times {
    pub count: u64,
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub max_ms: Option<u64>,
}

impl From<&Latency> for Times {
    fn from(l: &Latency) -> Self {
        Self {
            count: l.count,
            p50_ms: l.p50(),
            p90_ms: l.p90(),
            max_ms: (l.count > 0).then_some(l.max_ms),
        }
    }
}

/// One row: an agency or a level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Agency id, or `level N`.
    pub id: String,
    pub name: Option<String>,
    pub level: Option<u8>,
    pub sent: u64,
    pub copies_sent: u64,
    pub received: u64,
    pub to_arrived: Times,
    pub to_accepted: Times,
    pub to_completed: Times,
    pub past_due: u64,
    pub unacknowledged: u64,
    /// Received documents and never posted a 01 (agencies); agencies so (levels).
    pub never_acknowledged: u64,
}

/// A stalled copy, identifiers only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stalled {
    pub sender: String,
    pub recipient: String,
    pub content_id: String,
    pub index: u64,
    pub due: String,
    pub stage: String,
    pub age_ms: u64,
    pub overdue_ms: u64,
}

/// The report's data.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub now_ms: u64,
    pub entries: u64,
    pub violations: usize,
    pub agencies: Vec<Row>,
    pub levels: Vec<Row>,
    pub stalled: Vec<Stalled>,
    pub stalled_total: u64,
    pub never_acknowledged: Vec<String>,
    pub open_documents: u64,
}

fn row(a: &AgencyStats) -> Row {
    Row {
        id: a.id.to_string(),
        name: a.name.clone(),
        level: a.level,
        sent: a.documents_sent,
        copies_sent: a.copies_sent,
        received: a.documents_received,
        to_arrived: (&a.time_to_arrived).into(),
        to_accepted: (&a.time_to_accepted).into(),
        to_completed: (&a.time_to_completed).into(),
        past_due: a.past_due,
        unacknowledged: a.unacknowledged,
        never_acknowledged: u64::from(a.never_acknowledged()),
    }
}

fn stalled(s: &StalledCopy) -> Stalled {
    Stalled {
        sender: s.sender.to_string(),
        recipient: s.recipient.to_string(),
        content_id: s.document.to_string(),
        index: s.index,
        due: s.due.clone(),
        stage: s.stage.to_string(),
        age_ms: s.age_ms,
        overdue_ms: s.overdue_ms,
    }
}

/// Builds the report's data from the replay statistics.
pub fn data(stats: &Stats, entries: u64, violations: usize) -> ReportData {
    let agencies: Vec<Row> = stats.agencies.iter().map(row).collect();
    let mut by_level: BTreeMap<Option<u8>, (Row, [Latency; 3])> = BTreeMap::new();
    for a in &stats.agencies {
        let (r, l) = by_level.entry(a.level).or_insert_with(|| {
            (
                Row {
                    id: a
                        .level
                        .map_or_else(|| "level ?".to_string(), |l| format!("level {l}")),
                    name: None,
                    level: a.level,
                    sent: 0,
                    copies_sent: 0,
                    received: 0,
                    to_arrived: (&Latency::default()).into(),
                    to_accepted: (&Latency::default()).into(),
                    to_completed: (&Latency::default()).into(),
                    past_due: 0,
                    unacknowledged: 0,
                    never_acknowledged: 0,
                },
                Default::default(),
            )
        });
        r.sent += a.documents_sent;
        r.copies_sent += a.copies_sent;
        r.received += a.documents_received;
        r.past_due += a.past_due;
        r.unacknowledged += a.unacknowledged;
        r.never_acknowledged += u64::from(a.never_acknowledged());
        let [l1, l3, l6] = l;
        l1.merge(&a.time_to_arrived);
        l3.merge(&a.time_to_accepted);
        l6.merge(&a.time_to_completed);
    }
    let levels = by_level
        .into_values()
        .map(|(mut r, [l1, l3, l6])| {
            r.to_arrived = (&l1).into();
            r.to_accepted = (&l3).into();
            r.to_completed = (&l6).into();
            r
        })
        .collect();
    ReportData {
        now_ms: stats.now_ms,
        entries,
        violations,
        agencies,
        levels,
        stalled: stats.stalled.iter().map(stalled).collect(),
        stalled_total: stats.stalled_total,
        never_acknowledged: stats
            .never_acknowledged
            .iter()
            .map(ToString::to_string)
            .collect(),
        open_documents: stats.open_documents,
    }
}

/// Replays the mirror at `dir` (structure only) and renders its report.
///
/// # Errors
/// As [`replay`].
pub fn report(
    dir: &Path,
    format: ReportFormat,
    opts: &ReplayOptions,
) -> Result<String, AuditError> {
    let mut o = opts.clone();
    if o.checks == Checks::Full {
        o.checks = Checks::Structure;
    }
    o.check_tiles = false;
    if o.witnesses.is_empty() {
        o.quorum = Some(0);
    }
    let outcome = replay(&[Source::Dir(dir.to_path_buf())], &o)?;
    let log = outcome
        .logs
        .first()
        .ok_or_else(|| AuditError::invalid(dir.display().to_string(), "nothing replayed"))?;
    let d = data(
        &log.report.stats,
        log.report.entries,
        log.report.violations.len() + log.problems.len(),
    );
    Ok(render(&d, format))
}

/// Renders report data.
pub fn render(d: &ReportData, format: ReportFormat) -> String {
    match format {
        ReportFormat::Table => table(d),
        ReportFormat::Json => serde_json::to_string_pretty(&json!(d)).unwrap_or_default() + "\n",
        ReportFormat::Csv => csv(d),
        ReportFormat::Html => html(d),
    }
}

/// `1d 02h`, `3h 04m`, `5m 06s`, `789 ms`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {:02}s", s % 60)
    } else if s > 0 {
        format!("{s}.{:01}s", ms % 1000 / 100)
    } else {
        format!("{ms} ms")
    }
}

fn opt(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".into(), duration)
}

fn times(t: &Times) -> String {
    format!("{}/{}/{}", opt(t.p50_ms), opt(t.p90_ms), opt(t.max_ms))
}

/// An agency's or level's cells: `label` (each format names the row its own way), then
/// the figures.
fn row_cells(label: String, r: &Row) -> Vec<String> {
    vec![
        label,
        r.level.map_or("-".into(), |l| l.to_string()),
        r.sent.to_string(),
        r.copies_sent.to_string(),
        r.received.to_string(),
        times(&r.to_arrived),
        times(&r.to_accepted),
        times(&r.to_completed),
        r.past_due.to_string(),
        r.unacknowledged.to_string(),
        r.never_acknowledged.to_string(),
    ]
}

const STALLED_HEADER: [&str; 7] = [
    "sender",
    "recipient",
    "content id",
    "due",
    "stage",
    "age",
    "overdue",
];

/// The stalled copies' cells, for the table and the HTML.
fn stalled_cells(stalled: &[Stalled]) -> Vec<Vec<String>> {
    stalled
        .iter()
        .map(|x| {
            vec![
                x.sender.clone(),
                x.recipient.clone(),
                x.content_id.clone(),
                x.due.clone(),
                x.stage.clone(),
                duration(x.age_ms),
                duration(x.overdue_ms),
            ]
        })
        .collect()
}

fn table(d: &ReportData) -> String {
    let mut s = String::new();
    let header = [
        "agency",
        "lvl",
        "sent",
        "copies",
        "recv",
        "to 01 p50/p90/max",
        "to 03 p50/p90/max",
        "to 06 p50/p90/max",
        "past due",
        "unacked",
        "never 01",
    ];
    let fmt_rows = |rows: &[Row]| -> Vec<Vec<String>> {
        rows.iter().map(|r| row_cells(r.id.clone(), r)).collect()
    };
    let _ = writeln!(
        s,
        "Report at {} ms: {} entries, {} open documents, {} violation(s) seen (run `lienthong audit replay` for the verdict)\n",
        d.now_ms, d.entries, d.open_documents, d.violations
    );
    let _ = writeln!(s, "Per agency");
    s.push_str(&text_table(&header, &fmt_rows(&d.agencies)));
    let _ = writeln!(s, "\nPer level");
    s.push_str(&text_table(&header, &fmt_rows(&d.levels)));
    let _ = writeln!(
        s,
        "\nStalled copies (past due, not completed): {} (listed: {})",
        d.stalled_total,
        d.stalled.len()
    );
    s.push_str(&text_table(&STALLED_HEADER, &stalled_cells(&d.stalled)));
    if !d.never_acknowledged.is_empty() {
        let _ = writeln!(
            s,
            "\nNever acknowledged (received, never posted 01): {}",
            d.never_acknowledged.join(", ")
        );
    }
    s
}

fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let pad = w.saturating_sub(c.chars().count());
            if i == 0 {
                l.push_str(c);
                l.push_str(&" ".repeat(pad));
            } else {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let sep: String = widths
        .iter()
        .map(|w| "-".repeat(*w))
        .collect::<Vec<_>>()
        .join("  ");
    let mut s = line(header.to_vec()) + &sep + "\n";
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn num(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
}

/// Three sections (agencies, levels, stalled), each with its header row, separated by an
/// empty line. Times in milliseconds.
fn csv(d: &ReportData) -> String {
    let mut s = String::new();
    let head = "row,id,name,level,sent,copies_sent,received,to_01_count,to_01_p50_ms,to_01_p90_ms,to_01_max_ms,to_03_count,to_03_p50_ms,to_03_p90_ms,to_03_max_ms,to_06_count,to_06_p50_ms,to_06_p90_ms,to_06_max_ms,past_due,unacknowledged,never_acknowledged\n";
    s.push_str(head);
    for (kind, rows) in [("agency", &d.agencies), ("level", &d.levels)] {
        for r in rows {
            let t = |t: &Times| {
                format!(
                    "{},{},{},{}",
                    t.count,
                    num(t.p50_ms),
                    num(t.p90_ms),
                    num(t.max_ms)
                )
            };
            let _ = writeln!(
                s,
                "{kind},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.id),
                csv_field(r.name.as_deref().unwrap_or("")),
                r.level.map(|l| l.to_string()).unwrap_or_default(),
                r.sent,
                r.copies_sent,
                r.received,
                t(&r.to_arrived),
                t(&r.to_accepted),
                t(&r.to_completed),
                r.past_due,
                r.unacknowledged,
                r.never_acknowledged
            );
        }
    }
    s.push_str("\nsender,recipient,content_id,index,due,stage,age_ms,overdue_ms\n");
    for x in &d.stalled {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{}",
            csv_field(&x.sender),
            csv_field(&x.recipient),
            csv_field(&x.content_id),
            x.index,
            csv_field(&x.due),
            csv_field(&x.stage),
            x.age_ms,
            x.overdue_ms
        );
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A horizontal bar chart: one row per label, one bar per series.
fn bar_chart(
    title: &str,
    series: &[(&str, &str)],
    rows: &[(String, Vec<u64>)],
    unit: &str,
) -> String {
    let max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let per = series.len().max(1);
    let bar_h = 10usize;
    let row_h = bar_h * per + 6;
    let (label_w, plot_w) = (150usize, 520usize);
    let height = 30 + rows.len() * row_h + 20;
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        esc(title),
        label_w + plot_w + 90,
        esc(title)
    );
    for (k, (name, color)) in series.iter().enumerate() {
        let x = label_w + k * 140;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"13\">{}</text>",
            x + 14,
            esc(name)
        );
    }
    for (i, (label, values)) in rows.iter().enumerate() {
        let y = 26 + i * row_h;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            label_w - 6,
            y + row_h / 2 + 2,
            esc(label)
        );
        for (k, v) in values.iter().enumerate() {
            let w = (*v as f64 / max as f64 * plot_w as f64).round() as u64;
            let color = series.get(k).map_or("#888", |s| s.1);
            let by = y + k * bar_h;
            let _ = write!(
                s,
                "<rect x=\"{label_w}\" y=\"{by}\" width=\"{w}\" height=\"{}\" fill=\"{color}\"><title>{}: {}</title></rect><text x=\"{}\" y=\"{}\" class=\"v\">{}</text>",
                bar_h - 1,
                esc(label),
                if unit == "ms" {
                    duration(*v)
                } else {
                    v.to_string()
                },
                label_w as u64 + w + 4,
                by + bar_h - 1,
                if unit == "ms" {
                    duration(*v)
                } else {
                    v.to_string()
                },
            );
        }
    }
    s.push_str("</svg></figure>\n");
    s
}

fn html_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = String::from("<table><thead><tr>");
    for h in header {
        let _ = write!(s, "<th>{}</th>", esc(h));
    }
    s.push_str("</tr></thead><tbody>\n");
    for r in rows {
        s.push_str("<tr>");
        for c in r {
            let _ = write!(s, "<td>{}</td>", esc(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</tbody></table>\n");
    s
}

/// One static HTML file: inline CSS, inline SVG charts, no script, no external asset.
fn html(d: &ReportData) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Lienthong audit report</title>\n<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}svg text{font:11px sans-serif}svg .v{fill:#444}figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:.3em}.warn{color:#a00}</style></head><body>\n<h1>Lienthong audit report</h1>\n",
    );
    let _ = writeln!(
        s,
        "<p>{} entries replayed; {} open documents; {} stalled copies; <span class=\"{}\">{} violation(s) seen</span> (run <code>lienthong audit replay</code> for the verdict). Generated at {} ms since the Unix epoch.</p>",
        d.entries,
        d.open_documents,
        d.stalled_total,
        if d.violations > 0 { "warn" } else { "" },
        d.violations,
        d.now_ms
    );
    let mut top: Vec<&Row> = d.agencies.iter().collect();
    top.sort_by_key(|r| std::cmp::Reverse(r.sent + r.received));
    top.truncate(30);
    let volume: Vec<(String, Vec<u64>)> = top
        .iter()
        .map(|r| (r.id.clone(), vec![r.sent, r.received]))
        .collect();
    s.push_str(&bar_chart(
        "Documents sent and received (top 30 agencies)",
        &[("sent", "#4e79a7"), ("received", "#f28e2b")],
        &volume,
        "",
    ));
    let mut slow: Vec<&Row> = d
        .agencies
        .iter()
        .filter(|r| r.to_completed.count > 0)
        .collect();
    slow.sort_by_key(|r| std::cmp::Reverse(r.to_completed.p90_ms));
    slow.truncate(30);
    let speed: Vec<(String, Vec<u64>)> = slow
        .iter()
        .map(|r| {
            (
                r.id.clone(),
                vec![
                    r.to_completed.p50_ms.unwrap_or(0),
                    r.to_completed.p90_ms.unwrap_or(0),
                ],
            )
        })
        .collect();
    s.push_str(&bar_chart(
        "Time to 06 (completed), slowest 30 agencies",
        &[("p50", "#59a14f"), ("p90", "#e15759")],
        &speed,
        "ms",
    ));
    let mut pd: Vec<&Row> = d.agencies.iter().filter(|r| r.past_due > 0).collect();
    pd.sort_by_key(|r| std::cmp::Reverse(r.past_due));
    pd.truncate(30);
    let stalled_rows: Vec<(String, Vec<u64>)> = pd
        .iter()
        .map(|r| (r.id.clone(), vec![r.past_due, r.unacknowledged]))
        .collect();
    s.push_str(&bar_chart(
        "Copies past due without 06, and never acknowledged, per recipient",
        &[("past due", "#e15759"), ("no 01", "#bab0ac")],
        &stalled_rows,
        "",
    ));
    let header = [
        "agency",
        "level",
        "sent",
        "copies",
        "received",
        "to 01 p50/p90/max",
        "to 03 p50/p90/max",
        "to 06 p50/p90/max",
        "past due",
        "unacknowledged",
        "never 01",
    ];
    let rows = |rows: &[Row]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                let label = match &r.name {
                    Some(n) => format!("{} ({n})", r.id),
                    None => r.id.clone(),
                };
                row_cells(label, r)
            })
            .collect()
    };
    s.push_str("<h2>Per level</h2>\n");
    s.push_str(&html_table(&header, &rows(&d.levels)));
    s.push_str("<h2>Per agency</h2>\n");
    s.push_str(&html_table(&header, &rows(&d.agencies)));
    let _ = writeln!(
        s,
        "<h2>Stalled copies ({} past due without 06, {} listed)</h2>",
        d.stalled_total,
        d.stalled.len()
    );
    s.push_str(&html_table(&STALLED_HEADER, &stalled_cells(&d.stalled)));
    if !d.never_acknowledged.is_empty() {
        let _ = writeln!(
            s,
            "<h2>Never acknowledged</h2><p>{}</p>",
            esc(&d.never_acknowledged.join(", "))
        );
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0), "0 ms");
        assert_eq!(duration(1_500), "1.5s");
        assert_eq!(duration(61_000), "1m 01s");
        assert_eq!(duration(3_660_000), "1h 01m");
        assert_eq!(duration(90_000_000), "1d 01h");
    }

    #[test]
    fn csv_and_html_escape() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(esc("<b>&'\""), "&lt;b&gt;&amp;&#39;&quot;");
    }
}
