//! RFC 3339 timestamps to exact integer nanoseconds, as `parse/_timestamps.py` reads them.
//!
//! Lenient in the same ways: `T` or `t`; a fraction of any number of digits after `.` or
//! `,` (the first 9 count); `Z`, `z`, `±hh:mm`, `±hhmm` or `±hh`; a leap second `:60` is
//! the next minute's `:00`. A zone is required. Nanoseconds are `i128`: years 0000–9999
//! overflow `i64` nanoseconds, and Python's ints do not.

const NS: i128 = 1_000_000_000;
const DAYS_IN_MONTH: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// `10**(9 - n)`: the multiplier of an `n`-digit fraction.
pub const FRACTION_SCALE: [i128; 10] =
    [1_000_000_000, 100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1];

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[inline]
fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Epoch nanoseconds of a 19-byte `YYYY-MM-DDTHH:MM:SS` prefix (UTC), or `None`.
pub fn prefix_ns(p: &[u8]) -> Option<i128> {
    if p.len() != 19
        || p[4] != b'-'
        || p[7] != b'-'
        || (p[10] != b'T' && p[10] != b't')
        || p[13] != b':'
        || p[16] != b':'
    {
        return None;
    }
    let year = digits(&p[0..4])?;
    let month = digits(&p[5..7])?;
    let day = digits(&p[8..10])?;
    let hour = digits(&p[11..13])?;
    let minute = digits(&p[14..16])?;
    let second = digits(&p[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > DAYS_IN_MONTH[month as usize] {
        return None;
    }
    if month == 2 && day == 29 && !(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(i128::from(secs) * NS)
}

/// Epoch nanoseconds of an RFC 3339 timestamp, or `None` when it is not one.
pub fn parse_rfc3339(ts: &[u8]) -> Option<i128> {
    if ts.len() < 19 {
        return None;
    }
    let mut value = prefix_ns(&ts[..19])?;
    let mut i = 19;
    if i < ts.len() && (ts[i] == b'.' || ts[i] == b',') {
        i += 1;
        let start = i;
        while i < ts.len() && ts[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &ts[start..i.min(start + 9)];
        if !frac.is_empty() {
            value += i128::from(digits(frac)?) * FRACTION_SCALE[frac.len()];
        }
    }
    let zone = &ts[i..];
    match zone {
        [b'Z' | b'z'] => Some(value),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (hh, mm) = match rest {
                [h1, h2] => ([*h1, *h2], None),
                [h1, h2, m1, m2] => ([*h1, *h2], Some([*m1, *m2])),
                [h1, h2, b':', m1, m2] => ([*h1, *h2], Some([*m1, *m2])),
                _ => return None,
            };
            let hours = i128::from(digits(&hh)?);
            let minutes = match mm {
                Some(m) => i128::from(digits(&m)?),
                None => 0,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = (hours * 3600 + minutes * 60) * NS;
            Some(if *sign == b'+' { value - offset } else { value + offset })
        }
        _ => None,
    }
}
