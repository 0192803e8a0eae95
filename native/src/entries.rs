//! The entry layout (`kloghub/kernels/_entries.py`): `[EventTime, record]` msgpack arrays
//! in msgpack-python's smallest forms, written with rmp. The constant pieces of a file's
//! record (its `kubernetes` map, `file`, `file_id`, `owner`, `parser`) arrive encoded
//! already, from the Python `EntryContext`.

use rmp::encode;

use crate::cri::Stream;
use crate::flags;

const NS: i128 = 1_000_000_000;

/// What is constant for a file's entries (see `EntryContext`).
pub struct Context {
    /// `0x83` or `0x84`: the record map's header.
    pub record_head: u8,
    /// `"kubernetes"` and its map, or nothing.
    pub kubernetes: Vec<u8>,
    /// `"file"`, path, `"file_id"`, id.
    pub file: Vec<u8>,
    /// `"owner"` / `"parser"` pairs, or nothing.
    pub tail: Vec<u8>,
    /// Pairs of the `kloghub` map without `flags` and `raw`.
    pub kloghub_size: u8,
}

const FLAG_NAMES: [&str; 5] = ["partial", "truncated", "parse_error", "invalid_utf8", "multiline"];

/// The encoded `flags` array of each flag set (index: the bits).
pub struct FlagTable([Vec<u8>; 32]);

/// The table, built once per process.
pub fn flag_table() -> &'static FlagTable {
    static TABLE: std::sync::OnceLock<FlagTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(FlagTable::new)
}

impl FlagTable {
    fn new() -> Self {
        FlagTable(std::array::from_fn(|bits| {
            let names: Vec<&str> = FLAG_NAMES
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, n)| *n)
                .collect();
            let mut out = Vec::new();
            let _ = encode::write_array_len(&mut out, names.len() as u32);
            for name in names {
                let _ = encode::write_str(&mut out, name);
            }
            out
        }))
    }
}

/// What one call produced so far.
#[derive(Default)]
pub struct Out {
    pub buf: Vec<u8>,
    pub count: usize,
    pub invalid_utf8: usize,
    pub end_offset: i64,
    /// Lines that did not parse while the format was still being detected (`auto`).
    pub errors_auto: usize,
    /// Lines that did not parse in the file's format.
    pub errors: usize,
}

/// Append one entry to `out`.
#[allow(clippy::too_many_arguments)]
pub fn write_entry(
    out: &mut Out,
    ctx: &Context,
    table: &FlagTable,
    time_ns: i128,
    stream: Stream,
    message: &str,
    raw: Option<&[u8]>,
    flag_bits: u8,
    end: i64,
) {
    let buf = &mut out.buf;
    let seconds = time_ns.div_euclid(NS);
    let nanos = time_ns.rem_euclid(NS) as u32;
    if (0..=i128::from(u32::MAX)).contains(&seconds) {
        buf.extend_from_slice(&[0x92, 0xd7, 0x00]);
        buf.extend_from_slice(&(seconds as u32).to_be_bytes());
        buf.extend_from_slice(&nanos.to_be_bytes());
    } else {
        buf.push(0x92);
        let _ = encode::write_sint(buf, seconds as i64);
    }
    buf.push(ctx.record_head);
    buf.extend_from_slice(b"\xa3log");
    let _ = encode::write_str(buf, message);
    buf.extend_from_slice(b"\xa6stream");
    let _ = encode::write_str(buf, stream.name());
    buf.extend_from_slice(&ctx.kubernetes);
    buf.extend_from_slice(b"\xa7kloghub");
    let raw = if flag_bits & flags::INVALID_UTF8 != 0 { raw } else { None };
    let size = ctx.kloghub_size + u8::from(flag_bits != 0) + u8::from(raw.is_some());
    buf.push(0x80 | size);
    buf.extend_from_slice(&ctx.file);
    buf.extend_from_slice(b"\xa6offset");
    let _ = encode::write_uint(buf, end as u64);
    if flag_bits != 0 {
        buf.extend_from_slice(b"\xa5flags");
        buf.extend_from_slice(&table.0[usize::from(flag_bits & 31)]);
    }
    if let Some(raw) = raw {
        buf.extend_from_slice(b"\xa3raw");
        let _ = encode::write_bin(buf, raw);
    }
    buf.extend_from_slice(&ctx.tail);
    out.count += 1;
    if flag_bits & flags::INVALID_UTF8 != 0 {
        out.invalid_utf8 += 1;
    }
    out.end_offset = end;
}
