//! The record flags of `parse/_record.py`, bit for bit.

pub const PARTIAL_JOINED: u8 = 1;
pub const TRUNCATED: u8 = 2;
pub const PARSE_ERROR: u8 = 4;
pub const INVALID_UTF8: u8 = 8;
