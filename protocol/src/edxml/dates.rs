//! Dates and timestamps as edXML writes them, and as senders really write them.
//!
//! QCVN 102 writes dates `yyyy/MM/dd` and timestamps `yyyy/MM/dd HH:mm:ss` in Vietnam's
//! local time (UTC+07:00, no daylight saving). Import also takes `yyyy-MM-dd`,
//! `dd/MM/yyyy`, `dd-MM-yyyy`, an optional time after a space or `T`, and an optional
//! `Z` or `±hh:mm` offset. Export writes the QCVN forms.

use crate::calendar::civil_from_days;

/// Vietnam's offset from UTC, in milliseconds (UTC+07:00).
pub(crate) const VIETNAM_OFFSET_MS: i64 = 7 * 3_600_000;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// `YYYY-MM-DD`, the form [`crate::document`] stores.
    pub fn iso(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// `YYYY/MM/DD`, the form QCVN 102 writes.
    pub fn edxml(self) -> String {
        format!("{:04}/{:02}/{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

fn digits(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn make_date(year: u32, month: u32, day: u32) -> Option<Date> {
    let year = i32::try_from(year).ok()?;
    if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(Date { year, month, day })
}

/// Parses the date part only (`yyyy/MM/dd`, `yyyy-MM-dd`, `dd/MM/yyyy`, `dd-MM-yyyy`).
fn parse_date_part(s: &str) -> Option<Date> {
    let sep = if s.contains('/') { '/' } else { '-' };
    let mut parts = s.split(sep);
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    if a.len() == 4 {
        make_date(digits(a, 4)?, digits(b, 2)?, digits(c, 2)?)
    } else {
        make_date(digits(c, 4)?, digits(b, 2)?, digits(a, 2)?)
    }
}

/// Splits `date[ T]time` into its date and optional time parts.
fn split_date_time(s: &str) -> (&str, Option<&str>) {
    let s = s.trim();
    match s.find([' ', 'T']) {
        Some(i) => (
            s.get(..i).unwrap_or(s),
            s.get(i + 1..).map(str::trim).filter(|t| !t.is_empty()),
        ),
        None => (s, None),
    }
}

/// A date, with any time of day ignored.
pub(crate) fn parse_date(s: &str) -> Option<Date> {
    let (date, _) = split_date_time(s);
    parse_date_part(date)
}

/// Days since 1970-01-01 of `date`.
fn days_from_civil(date: Date) -> i64 {
    crate::calendar::days_from_civil(
        i64::from(date.year),
        i64::from(date.month),
        i64::from(date.day),
    )
}

/// Parses `HH:mm[:ss[.fff]]` followed by an optional `Z` or `±hh[:]mm` offset. Returns the
/// milliseconds into the day and the offset in milliseconds (Vietnam's when none is given).
fn parse_time(s: &str) -> Option<(i64, i64)> {
    let (clock, offset) = if let Some(rest) = s.strip_suffix(['Z', 'z']) {
        (rest, 0)
    } else if let Some(i) = s.rfind(['+', '-']) {
        let (clock, off) = s.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = off.get(1..)?.replace(':', "");
        let hours = i64::from(digits(off.get(..2)?, 2)?);
        let minutes = i64::from(digits(off.get(2..)?, 2)?);
        if hours > 14 || minutes > 59 {
            return None;
        }
        (clock, sign * (hours * 3_600_000 + minutes * 60_000))
    } else {
        (s, VIETNAM_OFFSET_MS)
    };
    let (clock, millis) = match clock.split_once(['.', ',']) {
        Some((c, frac)) => {
            if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let first3 = frac.get(..frac.len().min(3))?;
            let scale = 10i64.pow(u32::try_from(3 - first3.len()).ok()?);
            (c, first3.parse::<i64>().ok()? * scale)
        }
        None => (clock, 0),
    };
    let mut parts = clock.split(':');
    let hours = i64::from(digits(parts.next()?, 2)?);
    let minutes = i64::from(digits(parts.next()?, 2)?);
    let seconds = match parts.next() {
        Some(p) => i64::from(digits(p, 2)?),
        None => 0,
    };
    if parts.next().is_some() || hours > 23 || minutes > 59 || seconds > 60 {
        return None;
    }
    Some((
        (hours * 3600 + minutes * 60 + seconds) * 1000 + millis,
        offset,
    ))
}

/// A timestamp as Unix milliseconds; times without an offset are Vietnam's local time,
/// a date alone is its local midnight.
pub(crate) fn parse_timestamp(s: &str) -> Option<u64> {
    let (date, time) = split_date_time(s);
    let date = parse_date_part(date)?;
    let (in_day, offset) = match time {
        Some(t) => parse_time(t)?,
        None => (0, VIETNAM_OFFSET_MS),
    };
    let ms = days_from_civil(date)
        .checked_mul(86_400_000)?
        .checked_add(in_day)?
        .checked_sub(offset)?;
    u64::try_from(ms).ok().filter(|&ms| ms <= MAX_TIMESTAMP_MS)
}

/// The last millisecond that [`format_timestamp`] writes with a four-digit year:
/// 9999/12/31 23:59:59.999 in Vietnam.
pub(crate) const MAX_TIMESTAMP_MS: u64 = 253_402_275_599_999;

/// `yyyy/MM/dd HH:mm:ss` in Vietnam's local time, the QCVN 102 timestamp form.
pub(crate) fn format_timestamp(unix_ms: u64) -> String {
    let local = i64::try_from(unix_ms / 1000)
        .unwrap_or(i64::MAX / 2)
        .saturating_add(VIETNAM_OFFSET_MS / 1000);
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}/{month:02}/{day:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_in_every_accepted_form() {
        let want = Date {
            year: 2026,
            month: 2,
            day: 28,
        };
        for s in [
            "2026/02/28",
            "2026-02-28",
            "28/02/2026",
            "28-02-2026",
            " 2026/02/28 00:00:00 ",
            "2026-02-28T10:00:00+07:00",
        ] {
            assert_eq!(parse_date(s), Some(want), "{s}");
        }
        for s in ["2026/02/29", "2026/13/01", "26/02/28", "2026/2/28", "", "x"] {
            assert_eq!(parse_date(s), None, "{s}");
        }
        assert!(parse_date("2024/02/29").is_some());
    }

    #[test]
    fn timestamps_are_vietnam_time_unless_told() {
        // 2026-11-23 10:00:00 +07:00 = 03:00:00 UTC.
        let utc = 1_795_402_800_000;
        assert_eq!(parse_timestamp("2026/11/23 10:00:00"), Some(utc));
        assert_eq!(parse_timestamp("23/11/2026 10:00:00"), Some(utc));
        assert_eq!(parse_timestamp("2026-11-23T03:00:00Z"), Some(utc));
        assert_eq!(parse_timestamp("2026-11-23T10:00:00+07:00"), Some(utc));
        assert_eq!(
            parse_timestamp("2026-11-23T10:00:00.250+0700"),
            Some(utc + 250)
        );
        assert_eq!(format_timestamp(utc), "2026/11/23 10:00:00");
        assert_eq!(parse_timestamp(&format_timestamp(utc + 999)), Some(utc));
        assert_eq!(parse_timestamp("2026/11/23 25:00:00"), None);
        assert_eq!(parse_timestamp("1970/01/01 00:00:00"), None);
        assert_eq!(format_timestamp(MAX_TIMESTAMP_MS), "9999/12/31 23:59:59");
        assert_eq!(
            parse_timestamp("9999/12/31 23:59:59.999"),
            Some(MAX_TIMESTAMP_MS)
        );
        assert_eq!(parse_timestamp("9999/12/31 23:59:59-14:00"), None);
    }
}
