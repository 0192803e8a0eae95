//! Bytes to message text the way the reference does it (`parse/_parser.py` `_decode`).
//!
//! Invalid UTF-8 becomes U+FFFD per maximal invalid subpart — what both Python's
//! `bytes.decode("utf-8", "replace")` and Rust's `String::from_utf8_lossy` do (the
//! Unicode Standard's recommended practice) — and the original bytes are kept as `raw`.

use std::borrow::Cow;

use crate::flags;

/// `data` without a UTF-8 sequence cut short at its end (as a byte cap leaves it).
pub fn trim_incomplete(data: &[u8]) -> &[u8] {
    let n = data.len();
    for back in 1..=n.min(4) {
        let byte = data[n - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        if byte < 0xC0 {
            return data;
        }
        let need = if byte < 0xE0 {
            2
        } else if byte < 0xF0 {
            3
        } else {
            4
        };
        return if back < need { &data[..n - back] } else { data };
    }
    data
}

/// A decoded message: the text, whether the bytes were kept as `raw`, and the flags.
pub struct Decoded<'a> {
    pub text: Cow<'a, str>,
    pub raw: bool,
    pub flags: u8,
}

/// `(message, raw kept, flags)`: raw bytes are kept only when they were not UTF-8; a
/// capped (`TRUNCATED`) message first loses a sequence its cap cut in half.
pub fn decode(data: &[u8], flags: u8) -> Decoded<'_> {
    if let Ok(text) = std::str::from_utf8(data) {
        return Decoded { text: Cow::Borrowed(text), raw: false, flags };
    }
    if flags & flags::TRUNCATED != 0 {
        let trimmed = trim_incomplete(data);
        if trimmed.len() != data.len() {
            if let Ok(text) = std::str::from_utf8(trimmed) {
                return Decoded { text: Cow::Borrowed(text), raw: false, flags };
            }
        }
    }
    Decoded { text: String::from_utf8_lossy(data), raw: true, flags: flags | flags::INVALID_UTF8 }
}
