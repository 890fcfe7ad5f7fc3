//! HTTP-dates (RFC 9110 5.6.7): formatting IMF-fixdate, parsing it and the
//! two obsolete forms recipients must accept. Written by hand: a few dozen
//! lines of calendar arithmetic are smaller than a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]; // 1970-01-01 was a Thursday
const LONG_DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month 1-12, day 1-31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Seconds since the epoch as an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn fmt_http_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The current time as an IMF-fixdate (for `Date:`).
pub fn http_date_now() -> String {
    fmt_http_date(unix_secs(SystemTime::now()))
}

/// Whole seconds since the epoch; times before it clamp to 0.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn two_digits(s: &str) -> Option<u32> {
    (s.len() == 2).then_some(())?;
    parse_decimal(s.as_bytes()).map(|v| v as u32)
}

fn month_index(s: &str) -> Option<u32> {
    MONTHS.iter().position(|&m| m == s).map(|i| i as u32 + 1)
}

fn parse_time(s: &str) -> Option<u64> {
    let mut it = s.split(':');
    let (h, m, sec) = (
        two_digits(it.next()?)?,
        two_digits(it.next()?)?,
        two_digits(it.next()?)?,
    );
    if it.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(u64::from(h) * 3600 + u64::from(m) * 60 + u64::from(sec))
}

fn assemble(weekday: &str, long: bool, y: i64, m: u32, d: u32, secs: u64) -> Option<u64> {
    if !(1970..=9999).contains(&y) || d == 0 {
        return None;
    }
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > dim[(m - 1) as usize] {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let names = if long { &LONG_DAYS } else { &DAYS };
    // Strict: the weekday must agree with the date.
    if names[days.rem_euclid(7) as usize] != weekday {
        return None;
    }
    Some(days as u64 * 86_400 + secs)
}

/// Parse an HTTP-date (RFC 9110 5.6.7): IMF-fixdate, and the obsolete
/// RFC 850 and asctime forms that recipients must still accept. Returns
/// seconds since the epoch; `None` for anything else, dates before 1970, or a
/// weekday that does not match the date.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let parts: Vec<&str> = s.split(' ').collect();
    match parts.as_slice() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, mon, y, t, "GMT"] if wd.len() == 4 && y.len() == 4 => {
            let wd = wd.strip_suffix(',')?;
            let y = parse_decimal(y.as_bytes())? as i64;
            assemble(
                wd,
                false,
                y,
                month_index(mon)?,
                two_digits(d)?,
                parse_time(t)?,
            )
        }
        // Sunday, 06-Nov-94 08:49:37 GMT
        [wd, date, t, "GMT"] => {
            let wd = wd.strip_suffix(',')?;
            let mut dp = date.split('-');
            let (d, mon, yy) = (dp.next()?, dp.next()?, dp.next()?);
            if dp.next().is_some() {
                return None;
            }
            let yy = i64::from(two_digits(yy)?);
            // RFC 9110: a two-digit year more than 50 years ahead is in the past.
            let y = if yy < 70 { 2000 + yy } else { 1900 + yy };
            assemble(
                wd,
                true,
                y,
                month_index(mon)?,
                two_digits(d)?,
                parse_time(t)?,
            )
        }
        // Sun Nov  6 08:49:37 1994 (day space-padded)
        [wd, mon, "", d, t, y] if d.len() == 1 => asctime(wd, mon, d, t, y),
        [wd, mon, d, t, y] if d.len() == 2 => asctime(wd, mon, d, t, y),
        _ => None,
    }
}

fn asctime(wd: &str, mon: &str, d: &str, t: &str, y: &str) -> Option<u64> {
    if y.len() != 4 {
        return None;
    }
    let d = parse_decimal(d.as_bytes())? as u32;
    let y = parse_decimal(y.as_bytes())? as i64;
    assemble(wd, false, y, month_index(mon)?, d, parse_time(t)?)
}

/// A non-empty run of ASCII digits as u64; `None` on overflow or junk.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}
