//! Plain text lines (node logs): a leading RFC 3339 timestamp is the line's time
//! (`parse/_text.py` `leading_time`).

use crate::timestamp;

/// Epoch nanoseconds of an RFC 3339 timestamp that starts `line`, or `None`.
pub fn leading_time(line: &[u8]) -> Option<i128> {
    if line.len() < 20 || line[4] != b'-' || line[7] != b'-' || !line[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    // bytes.find(b" ", 19, 48): a space at index 19..48
    let window = &line[19..line.len().min(48)];
    let stamp = match memchr::memchr(b' ', window) {
        Some(i) if 19 + i > 0 => &line[..19 + i],
        _ => &line[..line.len().min(48)],
    };
    timestamp::parse_rfc3339(stamp)
}
