//! The hub SDK's time formats, in Vietnam's time (UTC+7, no daylight saving): list times
//! and `fromDate`/`toDate` as `dd/MM/yyyy HH:mm:ss`, and `XroadVnpt-timestamp` as Java's
//! `ddMMyyyy'T'HHmmss+SSSS` (a literal `+`, then the milliseconds on four digits).

use lienthong_protocol::calendar::{civil_from_days, days_from_civil};

/// UTC+7 in milliseconds.
const VIETNAM_OFFSET_MS: i64 = 7 * 3_600_000;

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Unix milliseconds of a Vietnam local time, if the fields form one (years 1970–9999).
fn local_ms(fields: [i64; 7]) -> Option<u64> {
    let [year, month, day, hour, minute, second, ms] = fields;
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second)
        && (0..1000).contains(&ms);
    if !valid {
        return None;
    }
    let local = ((days_from_civil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second;
    u64::try_from(local * 1000 + ms - VIETNAM_OFFSET_MS).ok()
}

fn local_fields(unix_ms: u64) -> [i64; 7] {
    let local = i64::try_from(unix_ms).unwrap_or(i64::MAX / 2) + VIETNAM_OFFSET_MS;
    let (secs, ms) = (local.div_euclid(1000), local.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    [
        year,
        month.into(),
        day.into(),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms,
    ]
}

/// Digits at `range` of `s` as a number.
fn digits(s: &str, range: std::ops::Range<usize>) -> Option<i64> {
    let part = s.get(range)?;
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// `dd/MM/yyyy HH:mm:ss` (Vietnam time).
pub fn format_list_time(unix_ms: u64) -> String {
    let [y, mo, d, h, mi, s, _] = local_fields(unix_ms);
    format!("{d:02}/{mo:02}/{y:04} {h:02}:{mi:02}:{s:02}")
}

/// Parses `dd/MM/yyyy HH:mm:ss` (or `dd/MM/yyyy`, meaning midnight) in Vietnam time.
pub fn parse_list_time(s: &str) -> Option<u64> {
    let s = s.trim();
    let shape = s.as_bytes();
    if !(shape.len() == 10 || shape.len() == 19)
        || shape.get(2) != Some(&b'/')
        || shape.get(5) != Some(&b'/')
    {
        return None;
    }
    let (hour, minute, second) = if shape.len() == 19 {
        if shape.get(10) != Some(&b' ')
            || shape.get(13) != Some(&b':')
            || shape.get(16) != Some(&b':')
        {
            return None;
        }
        (digits(s, 11..13)?, digits(s, 14..16)?, digits(s, 17..19)?)
    } else {
        (0, 0, 0)
    };
    local_ms([
        digits(s, 6..10)?,
        digits(s, 3..5)?,
        digits(s, 0..2)?,
        hour,
        minute,
        second,
        0,
    ])
}

/// `ddMMyyyy'T'HHmmss+SSSS` (Vietnam time), as the SDK writes `XroadVnpt-timestamp`.
pub fn format_sdk_timestamp(unix_ms: u64) -> String {
    let [y, mo, d, h, mi, s, ms] = local_fields(unix_ms);
    format!("{d:02}{mo:02}{y:04}T{h:02}{mi:02}{s:02}+{ms:04}")
}

/// Parses `ddMMyyyy'T'HHmmss+SSSS` (the milliseconds on 1 to 4 digits).
pub fn parse_sdk_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    let bytes = s.as_bytes();
    if bytes.len() < 17
        || bytes.len() > 20
        || bytes.get(8) != Some(&b'T')
        || bytes.get(15) != Some(&b'+')
    {
        return None;
    }
    local_ms([
        digits(s, 4..8)?,
        digits(s, 2..4)?,
        digits(s, 0..2)?,
        digits(s, 9..11)?,
        digits(s, 11..13)?,
        digits(s, 13..15)?,
        digits(s, 16..s.len())?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_times_are_vietnam_local() {
        // 2026-11-23T09:55:02.123Z is 16:55:02 in Hanoi.
        assert_eq!(format_list_time(1_795_427_702_123), "23/11/2026 16:55:02");
        assert_eq!(
            parse_list_time("23/11/2026 16:55:02"),
            Some(1_795_427_702_000)
        );
        assert_eq!(parse_list_time("01/01/1970"), None); // before the epoch in UTC
        assert_eq!(
            parse_list_time("02/01/1970"),
            Some(86_400_000 - 7 * 3_600_000)
        );
        for bad in [
            "",
            "31/02/2026 00:00:00",
            "23/11/2026 24:00:00",
            "23-11-2026",
            "aa/bb/cccc",
        ] {
            assert_eq!(parse_list_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn sdk_timestamps_round_trip() {
        let t = 1_795_427_702_123;
        assert_eq!(format_sdk_timestamp(t), "23112026T165502+0123");
        assert_eq!(parse_sdk_timestamp("23112026T165502+0123"), Some(t));
        assert_eq!(parse_sdk_timestamp("23112026T165502+123"), Some(t));
        for bad in [
            "23112026165502+0123",
            "23112026T165502-0123",
            "2311202xT165502+0123",
            "",
        ] {
            assert_eq!(parse_sdk_timestamp(bad), None, "{bad}");
        }
    }
}
