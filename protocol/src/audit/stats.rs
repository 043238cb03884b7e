//! The report's numbers, computed in the replay pass: per-agency volumes and processing
//! times, and the stalled (past due, unfinished) copies. Plain data, no formatting.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::agency::AgencyId;
use crate::content_id::ContentId;
use crate::status::{Stage, StatusCode};

/// Values below this are kept exactly by [`Latency`] (one bucket per millisecond).
const EXACT_BELOW: u64 = 64;
/// Sub-buckets per power of two above [`EXACT_BELOW`]: relative error at most 1/32.
const SUB_BITS: u32 = 5;

/// A distribution of durations in milliseconds: exact count, sum and maximum, and a
/// log-linear histogram for quantiles (exact below 64 ms, within 1/32 (3.2 %) above).
/// Memory grows with the number of distinct buckets used (at most 1,920), never with the
/// number of values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Number of values.
    pub count: u64,
    /// Sum of the values (saturating), for means.
    pub sum_ms: u64,
    /// Largest value.
    pub max_ms: u64,
    /// `(bucket, count)`, sorted by bucket.
    #[serde(skip)]
    buckets: Vec<(u16, u64)>,
}

fn bucket_of(v: u64) -> u16 {
    if v < EXACT_BELOW {
        return v as u16;
    }
    let e = 63 - v.leading_zeros(); // >= 6
    let sub = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (EXACT_BELOW + u64::from(e - 6) * (1 << SUB_BITS) + sub) as u16
}

/// The smallest and largest values of a bucket.
fn bucket_range(b: u16) -> (u64, u64) {
    let b = u64::from(b);
    if b < EXACT_BELOW {
        return (b, b);
    }
    let k = b - EXACT_BELOW;
    let e = (k >> SUB_BITS) + 6;
    let sub = k & ((1 << SUB_BITS) - 1);
    let width = 1u64 << (e - u64::from(SUB_BITS));
    let lo = (1u64 << e) + sub * width;
    (lo, lo.saturating_add(width - 1))
}

impl Latency {
    /// Adds one value.
    pub fn record(&mut self, ms: u64) {
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.max_ms = self.max_ms.max(ms);
        let b = bucket_of(ms);
        match self.buckets.binary_search_by_key(&b, |&(k, _)| k) {
            Ok(i) => {
                if let Some((_, n)) = self.buckets.get_mut(i) {
                    *n += 1;
                }
            }
            Err(i) => self.buckets.insert(i, (b, 1)),
        }
    }

    /// The `q`-quantile (0 < q <= 1; nearest rank), within 3.2 % of the exact value (exact
    /// below 64 ms and for `q = 1`); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max_ms);
        }
        let rank = ((q.max(0.0) * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for &(b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let (lo, hi) = bucket_range(b);
                return Some((lo + (hi - lo) / 2).min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }

    /// Adds every value of `other` (for totals over several agencies).
    pub fn merge(&mut self, other: &Latency) {
        self.count += other.count;
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
        for &(b, n) in &other.buckets {
            match self.buckets.binary_search_by_key(&b, |&(k, _)| k) {
                Ok(i) => {
                    if let Some((_, m)) = self.buckets.get_mut(i) {
                        *m += n;
                    }
                }
                Err(i) => self.buckets.insert(i, (b, n)),
            }
        }
    }

    /// Median.
    pub fn p50(&self) -> Option<u64> {
        self.quantile(0.5)
    }

    /// 90th percentile.
    pub fn p90(&self) -> Option<u64> {
        self.quantile(0.9)
    }
}

/// One agency's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgencyStats {
    /// The agency.
    pub id: AgencyId,
    /// Its name in the last roster applied, if listed.
    pub name: Option<String>,
    /// Administrative level (from the code, or the roster for other forms).
    pub level: Option<u8>,
    /// Documents (new, revoke, update, replace) it sent.
    pub documents_sent: u64,
    /// Recipient copies of those documents (a document to 3 agencies counts 3).
    pub copies_sent: u64,
    /// Documents addressed to it.
    pub documents_received: u64,
    /// Statuses it posted, by code (valid or not).
    pub statuses_sent: BTreeMap<StatusCode, u64>,
    /// As a recipient: document creation to its 01, 03 and 06, per copy (status and document
    /// `created_ms`, negative differences from clock skew count as 0).
    pub time_to_arrived: Latency,
    pub time_to_accepted: Latency,
    pub time_to_completed: Latency,
    /// Copies addressed to it, still open at the end, without its 01.
    pub unacknowledged: u64,
    /// Copies addressed to it, still open, past their due date at `now` without 02/06/recall.
    pub past_due: u64,
    /// Copies addressed to it that were still unfinished when the replay stopped tracking the
    /// document (older than the horizon, or evicted by the open-document cap).
    pub expired_unfinished: u64,
}

impl AgencyStats {
    /// It received documents but never posted a 01 (arrived).
    pub fn never_acknowledged(&self) -> bool {
        self.documents_received > 0 && !self.statuses_sent.contains_key(&StatusCode::Arrived)
    }
}

/// A recipient's copy that is past its due date without being finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StalledCopy {
    /// The document's content id.
    pub document: ContentId,
    /// Its entry index in the log.
    pub index: u64,
    pub sender: AgencyId,
    pub recipient: AgencyId,
    /// Creation time of the document (sender's clock).
    pub created_ms: u64,
    /// The due date as sent (`YYYY-MM-DD`).
    pub due: String,
    /// Where the copy stands.
    pub stage: Stage,
    /// `now - created_ms`.
    pub age_ms: u64,
    /// `now` minus the end of the due day.
    pub overdue_ms: u64,
}

/// Everything the report needs, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// The `now` the due dates were compared with (ms since the Unix epoch).
    pub now_ms: u64,
    /// Every agency seen (as sender, recipient or poster of a status), sorted by id.
    pub agencies: Vec<AgencyStats>,
    /// Past-due unfinished copies of open documents, oldest document first, at most
    /// `Limits::max_stalled_listed`.
    pub stalled: Vec<StalledCopy>,
    /// All past-due unfinished copies (the list may be cut).
    pub stalled_total: u64,
    /// Agencies that received documents but never posted a 01.
    pub never_acknowledged: Vec<AgencyId>,
    /// Documents still open (some recipient not finished) at the end.
    pub open_documents: u64,
    /// More agencies than `Limits::max_tracked_agencies` appeared; later ones are not counted.
    pub agencies_overflowed: bool,
}

/// Running per-agency totals (interned by index in the replayer).
#[derive(Debug, Clone, Default)]
pub(crate) struct Agg {
    pub documents_sent: u64,
    pub copies_sent: u64,
    pub documents_received: u64,
    pub statuses_sent: [u64; StatusCode::ALL.len()],
    pub time_to_arrived: Latency,
    pub time_to_accepted: Latency,
    pub time_to_completed: Latency,
    pub expired_unfinished: u64,
}

pub(crate) fn code_slot(code: StatusCode) -> usize {
    StatusCode::ALL
        .iter()
        .position(|c| *c == code)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch at the end of the due day `YYYY-MM-DD` in Vietnam time
/// (UTC+7), or `None` if the text is not such a date.
pub fn due_deadline_ms(due: &str) -> Option<u64> {
    let y: i64 = due.get(0..4)?.parse().ok()?;
    let m: i64 = due.get(5..7)?.parse().ok()?;
    let d: i64 = due.get(8..10)?.parse().ok()?;
    if due.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = crate::calendar::days_from_civil(y, m, d);
    let end = (days + 1) * 86_400_000 - 7 * 3_600_000;
    Some(u64::try_from(end).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn buckets_cover_every_value_once() {
        let mut last = None;
        for v in (0..5000u64).chain([1 << 20, (1 << 40) + 12345, u64::MAX]) {
            let b = bucket_of(v);
            let (lo, hi) = bucket_range(b);
            assert!(lo <= v && v <= hi, "{v} in {b}: {lo}..={hi}");
            assert!(hi - lo <= lo / 32, "{v}: bucket too wide");
            if let Some(prev) = last {
                assert!(b >= prev);
            }
            last = Some(b);
        }
    }

    #[test]
    fn quantiles_are_close() {
        let mut l = Latency::default();
        for v in 1..=1000u64 {
            l.record(v * 1000);
        }
        let p50 = l.p50().unwrap() as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.033, "{p50}");
        let p90 = l.p90().unwrap() as f64;
        assert!((p90 - 900_000.0).abs() / 900_000.0 < 0.033, "{p90}");
        assert_eq!(l.quantile(1.0), Some(1_000_000));
        assert_eq!(l.count, 1000);
        let mut merged = Latency::default();
        merged.merge(&l);
        merged.merge(&Latency::default());
        assert_eq!(merged, l);
        let mut small = Latency::default();
        for v in [5, 1, 3] {
            small.record(v);
        }
        assert_eq!(small.p50(), Some(3));
    }

    #[test]
    fn due_dates() {
        // 2026-01-01 00:00 UTC is 1_767_225_600_000; the end of that day in UTC+7 is 17:00 UTC.
        assert_eq!(
            due_deadline_ms("2026-01-01"),
            Some(1_767_225_600_000 + 17 * 3_600_000)
        );
        assert_eq!(
            due_deadline_ms("2024-03-01").unwrap() - due_deadline_ms("2024-02-28").unwrap(),
            2 * 86_400_000
        );
        assert_eq!(due_deadline_ms("2026-13-01"), None);
    }
}
