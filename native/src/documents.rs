//! The collector's request kernel: the entries of a (Compressed)PackedForward request →
//! the frames of its sink queues (`buffer/_segment.py`'s encoded events: the `_bulk`
//! `create` action and the ECS document of each record), without a Python object per
//! record.
//!
//! Records differ from each other, within one container's stream, only in their time, their
//! `log` line and their `kloghub.offset`. The document of a record is therefore the document
//! of its *shape* (the entry with those three values cut out) with those values spliced in.
//! The Python specification makes the template of each new shape
//! (`collector/_fastpath.py`: the normalizer and `sinks._bulk.encode` on a probe record
//! with marker values, cut at the markers), so every document is exactly what the Python
//! path writes for it; the property test in `tests/collector/test_fastpath.py` holds the
//! two to the same bytes. Records that are not of that form (no `offset`, a JSON line when
//! JSON is parsed, times out of range, invalid UTF-8, invalid-UTF-8 originals) are handed back
//! as byte ranges for the Python path.

use std::collections::HashMap;
use std::io::Write;
use std::rc::Rc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::applog::{self, App, Outcome};
use crate::msgpack::{Head, Malformed, Reader};

/// The slots of a template, between its pieces.
const SLOT_TIMESTAMP: u8 = 0;
const SLOT_INGESTED: u8 = 1;
const SLOT_MESSAGE: u8 = 2;
const SLOT_OFFSET: u8 = 3;
const SLOT_OFFSET_HEX: u8 = 4;
/// `event.original` (the line itself, where `message` may be a JSON line's own message).
const SLOT_ORIGINAL: u8 = 5;
/// After `message`: a JSON line's `error` object and the JSON target's object.
const SLOT_APP: u8 = 6;
/// At the start of the `log` object: a JSON line's `"level":…,`.
const SLOT_LEVEL: u8 = 7;

/// A msgpack marker no encoder writes: stands for a cut-out value in a shape key.
const HOLE: u8 = 0xc1;
const NS: i64 = 1_000_000_000;
const EVENT_TIME: i8 = 0;
/// Templates held (each about the size of one document: ~16 MiB at most in all).
const TEMPLATES_MAX: usize = 8192;
const OUT_KEEP: usize = 16 << 20;

/// The frame of one record's document, without its varying values.
struct Template {
    /// The data stream (the frame's tag).
    index: Vec<u8>,
    /// The document id up to the offset's hex digits.
    id_prefix: Vec<u8>,
    /// `pieces[i]`, `slots[i]`, …, the last piece.
    pieces: Vec<Vec<u8>>,
    slots: Vec<u8>,
    /// `,"<target>":` when JSON lines have their slots in this template (else they are
    /// left to Python).
    target_key: Option<Vec<u8>>,
}

/// One entry as the kernel reads it.
enum Entry<'a> {
    /// The values spliced into its shape's template.
    Covered { time_ns: i64, line: &'a [u8], offset: u64 },
    /// Left to the Python path.
    Other,
}

/// Cut-out value ranges of an entry, in order: time, log, offset.
struct Cuts {
    ranges: [(usize, usize); 3],
}

#[pyclass(module = "kloghub._native", unsendable)]
pub struct BulkDocuments {
    parse_json: bool,
    make_template: Py<PyAny>,
    /// Shape key → template (`None`: the Python path takes records of that shape).
    templates: HashMap<Vec<u8>, Option<Rc<Template>>>,
    last_key: Vec<u8>,
    last: Option<Rc<Template>>,
    key: Vec<u8>,
    second: i64,
    second_text: [u8; 19],
    out: Vec<u8>,
}

fn days_to_civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn two(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

/// `YYYY-MM-DDTHH:MM:SS` of a second since the epoch (≥ 0, before year 10000).
fn second_text(second: i64) -> [u8; 19] {
    let (y, m, d) = days_to_civil(second.div_euclid(86_400));
    let rem = second.rem_euclid(86_400) as u32;
    let mut t = *b"0000-00-00T00:00:00";
    let y = y as u32;
    two(&mut t[0..2], y / 100);
    two(&mut t[2..4], y % 100);
    two(&mut t[5..7], m);
    two(&mut t[8..10], d);
    two(&mut t[11..13], rem / 3600);
    two(&mut t[14..16], rem / 60 % 60);
    two(&mut t[17..19], rem % 60);
    t
}

/// A JSON string's content as orjson writes it: `"` and `\` escaped, control characters as
/// `\b \t \n \f \r` or `\u00xx`, everything else (valid UTF-8) as is.
pub fn escape_into(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// 0: as is; `u`: `\u00xx`; else the letter after the backslash.
    const ESCAPE: [u8; 256] = {
        let mut table = [0u8; 256];
        let mut i = 0;
        while i < 0x20 {
            table[i] = b'u';
            i += 1;
        }
        table[0x08] = b'b';
        table[b'\t' as usize] = b't';
        table[b'\n' as usize] = b'n';
        table[0x0c] = b'f';
        table[b'\r' as usize] = b'r';
        table[b'"' as usize] = b'"';
        table[b'\\' as usize] = b'\\';
        table
    };
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let short = ESCAPE[usize::from(b)];
        if short == 0 {
            continue;
        }
        out.extend_from_slice(&text[start..i]);
        if short == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
}

/// The line without one trailing `\n` or `\r\n` (`normalize._normalizer._strip_newline`).
fn strip_newline(text: &[u8]) -> &[u8] {
    match text {
        [rest @ .., b'\r', b'\n'] => rest,
        [rest @ .., b'\n'] => rest,
        _ => text,
    }
}

/// Reads the entry at `r.pos` (already known to end at `end`); `Other` for anything but
/// `[time, {…, "log": str, "kloghub": {…, "offset": uint}}]` with an in-range time.
fn read_entry<'a>(r: &mut Reader<'a>) -> Result<(Entry<'a>, Cuts), Malformed> {
    let mut cuts = Cuts { ranges: [(0, 0); 3] };
    if r.head()? != Head::Array(2) {
        return Ok((Entry::Other, cuts));
    }
    let time_start = r.pos;
    let time_ns = match r.head()? {
        Head::Ext(EVENT_TIME, 8) => {
            let b = r.take(8)?;
            let seconds = i64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let nanos = i64::from(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
            seconds * NS + nanos
        }
        Head::UInt(v) if v < (i64::MAX as u64) / (NS as u64) => v as i64 * NS,
        _ => return Ok((Entry::Other, cuts)),
    };
    cuts.ranges[0] = (time_start, r.pos);
    let Head::Map(pairs) = r.head()? else {
        return Ok((Entry::Other, cuts));
    };
    let mut line: Option<&[u8]> = None;
    let mut offset: Option<u64> = None;
    let mut seen_kloghub = false;
    for _ in 0..pairs {
        let Some(name) = r.str_bytes()? else {
            return Ok((Entry::Other, cuts));
        };
        match name {
            b"log" => {
                let start = r.pos;
                let Some(text) = r.str_bytes()? else {
                    return Ok((Entry::Other, cuts));
                };
                if line.is_some() || std::str::from_utf8(text).is_err() {
                    return Ok((Entry::Other, cuts));
                }
                line = Some(strip_newline(text));
                cuts.ranges[1] = (start, r.pos);
            }
            b"kloghub" => {
                let Head::Map(fields) = r.head()? else {
                    return Ok((Entry::Other, cuts));
                };
                if seen_kloghub {
                    return Ok((Entry::Other, cuts));
                }
                seen_kloghub = true;
                for _ in 0..fields {
                    let Some(field) = r.str_bytes()? else {
                        return Ok((Entry::Other, cuts));
                    };
                    match field {
                        b"offset" => {
                            let start = r.pos;
                            match r.head()? {
                                Head::UInt(v) if v < (1 << 63) && offset.is_none() => offset = Some(v),
                                _ => return Ok((Entry::Other, cuts)),
                            }
                            cuts.ranges[2] = (start, r.pos);
                        }
                        // the original bytes of an invalid UTF-8 line: a shape per record
                        b"raw" => return Ok((Entry::Other, cuts)),
                        _ => r.skip()?,
                    }
                }
            }
            _ => r.skip()?,
        }
    }
    match (line, offset) {
        (Some(line), Some(offset)) => Ok((Entry::Covered { time_ns, line, offset }, cuts)),
        _ => Ok((Entry::Other, cuts)),
    }
}

impl BulkDocuments {
    /// The shape key of the entry `data[start..end]`: the sender's scope and the tag, then
    /// the entry with its cut values replaced by `HOLE` (injective: msgpack strings are
    /// length-prefixed).
    fn shape_key(&mut self, scope: &[u8], tag: &[u8], data: &[u8], start: usize, end: usize, cuts: &Cuts) {
        let key = &mut self.key;
        key.clear();
        key.extend_from_slice(&(scope.len() as u64).to_le_bytes());
        key.extend_from_slice(scope);
        key.extend_from_slice(&(tag.len() as u64).to_le_bytes());
        key.extend_from_slice(tag);
        let mut pos = start;
        let mut ranges = cuts.ranges;
        ranges.sort_unstable();
        for (a, b) in ranges {
            key.extend_from_slice(&data[pos..a]);
            key.push(HOLE);
            pos = b;
        }
        key.extend_from_slice(&data[pos..end]);
    }

    /// The template of the current key, made by the Python specification when new.
    fn template(&mut self, py: Python<'_>, tag: &str, entry: &[u8]) -> PyResult<Option<Rc<Template>>> {
        if self.key == self.last_key {
            return Ok(self.last.clone());
        }
        let found = match self.templates.get(&self.key) {
            Some(found) => found.clone(),
            None => {
                let made = self.make(py, tag, entry)?;
                if self.templates.len() >= TEMPLATES_MAX {
                    self.templates.clear();
                }
                self.templates.insert(self.key.clone(), made.clone());
                made
            }
        };
        self.last_key.clone_from(&self.key);
        self.last.clone_from(&found);
        Ok(found)
    }

    fn make(&self, py: Python<'_>, tag: &str, entry: &[u8]) -> PyResult<Option<Rc<Template>>> {
        let value = self.make_template.bind(py).call1((tag, PyBytes::new(py, entry)))?;
        if value.is_none() {
            return Ok(None);
        }
        type Made = (Vec<u8>, Vec<u8>, Vec<Vec<u8>>, Vec<u8>, Option<Vec<u8>>);
        let (index, id_prefix, pieces, slots, target_key): Made = value.extract()?;
        if pieces.len() != slots.len() + 1 || slots.iter().any(|s| *s > SLOT_LEVEL) {
            return Err(PyValueError::new_err("a template has one more piece than slots, and known slots"));
        }
        if index.len() >= 0xffff || id_prefix.len() + 20 >= 0xffff {
            return Ok(None);
        }
        Ok(Some(Rc::new(Template { index, id_prefix, pieces, slots, target_key })))
    }

    fn timestamp(&mut self, time_ns: i64) -> [u8; 30] {
        let second = time_ns.div_euclid(NS);
        if second != self.second {
            self.second = second;
            self.second_text = second_text(second);
        }
        let mut text = [0u8; 30];
        text[..19].copy_from_slice(&self.second_text);
        text[19] = b'.';
        let mut frac = time_ns.rem_euclid(NS) as u32;
        for i in (20..29).rev() {
            text[i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        text[29] = b'Z';
        text
    }

    /// Appends the frame of one record (`u32 length | u32 crc32 | payload`).
    fn frame(
        &mut self,
        t: &Template,
        time_ns: i64,
        line: &[u8],
        offset: u64,
        ingested: &[u8],
        app: Option<&App>,
    ) {
        let stamp = self.timestamp(time_ns);
        let out = &mut self.out;
        let frame_start = out.len();
        out.extend_from_slice(&[0u8; 8]);
        let payload_start = out.len();
        let mut hex = [0u8; 16];
        let hex_len = {
            let mut cursor = &mut hex[..];
            let _ = write!(cursor, "{offset:012x}");
            16 - cursor.len()
        };
        let hex = &hex[..hex_len];
        out.push(0);
        out.extend_from_slice(&time_ns.to_le_bytes());
        out.extend_from_slice(&(t.index.len() as u16).to_le_bytes());
        out.extend_from_slice(&((t.id_prefix.len() + hex.len()) as u16).to_le_bytes());
        out.extend_from_slice(&t.index);
        out.extend_from_slice(&t.id_prefix);
        out.extend_from_slice(hex);
        for (piece, slot) in t.pieces.iter().zip(&t.slots) {
            out.extend_from_slice(piece);
            match *slot {
                SLOT_TIMESTAMP => out.extend_from_slice(&stamp),
                SLOT_INGESTED => out.extend_from_slice(ingested),
                SLOT_MESSAGE => match app.and_then(|a| a.message.as_ref()) {
                    Some(message) => escape_into(out, message.as_bytes()),
                    None => escape_into(out, line),
                },
                SLOT_ORIGINAL => escape_into(out, line),
                SLOT_OFFSET => {
                    let _ = write!(out, "{offset}");
                }
                SLOT_OFFSET_HEX => out.extend_from_slice(hex),
                SLOT_APP => {
                    if let Some(app) = app {
                        if !app.error.is_empty() {
                            out.extend_from_slice(b",\"error\":");
                            applog::write_error(out, &app.error);
                        }
                        if !app.rest.is_empty() {
                            out.extend_from_slice(t.target_key.as_deref().unwrap_or_default());
                            applog::write_rest(out, &app.rest);
                        }
                    }
                }
                _ => {
                    if let Some(level) = app.and_then(|a| a.level.as_ref()) {
                        out.extend_from_slice(b"\"level\":");
                        applog::write_str(out, level);
                        out.push(b',');
                    }
                }
            }
        }
        out.extend_from_slice(t.pieces.last().map_or(&[][..], Vec::as_slice));
        let payload = &out[payload_start..];
        let crc = crc32fast::hash(payload);
        let length = payload.len() as u32;
        out[frame_start..frame_start + 4].copy_from_slice(&length.to_le_bytes());
        out[frame_start + 4..frame_start + 8].copy_from_slice(&crc.to_le_bytes());
    }
}

/// `(frames, records in them, offset after the last entry read, ranges left to Python)`;
/// the offset is -1 when the entry there is not msgpack (the Python path then refuses it).
type Encoded = (Py<PyBytes>, usize, i64, Vec<(usize, usize)>);

#[pymethods]
impl BulkDocuments {
    /// `BulkDocuments(parse_json, make_template)`: `make_template(tag, entry)` returns the
    /// template of the entry's shape, `(index, id_prefix, pieces, slots)` with bytes pieces
    /// and the slots between them, or None to leave records of that shape to Python.
    #[new]
    fn new(parse_json: bool, make_template: Py<PyAny>) -> Self {
        BulkDocuments {
            parse_json,
            make_template,
            templates: HashMap::new(),
            last_key: Vec::new(),
            last: None,
            key: Vec::new(),
            second: -1,
            second_text: [0; 19],
            out: Vec::new(),
        }
    }

    /// Frames of the entries of `data` from `start`, until at least `max_bytes` of entries
    /// are read or they end; `ingested` is the `event.ingested` text of the documents,
    /// `scope` names the sender (its documents have templates of their own).
    #[allow(clippy::too_many_arguments)]
    fn encode(
        &mut self,
        py: Python<'_>,
        tag: &str,
        data: &[u8],
        start: usize,
        max_bytes: usize,
        ingested: &[u8],
        scope: &[u8],
    ) -> PyResult<Encoded> {
        self.out.clear();
        let mut others: Vec<(usize, usize)> = Vec::new();
        let mut records = 0;
        let mut pos = start;
        while pos < data.len() && pos - start < max_bytes {
            // A covered entry is read whole by read_entry; any other is skipped over.
            let rest = &data[pos..];
            let mut r = Reader::new(rest, 0);
            let (covered, cuts, end) = match read_entry(&mut r) {
                Ok((Entry::Covered { time_ns, line, offset }, cuts)) => {
                    (Some((time_ns, line, offset)), cuts, pos + r.pos)
                }
                _ => {
                    let mut skipper = Reader::new(data, pos);
                    if skipper.skip().is_err() {
                        return Ok((PyBytes::new(py, &self.out).unbind(), records, -1, others));
                    }
                    (None, Cuts { ranges: [(0, 0); 3] }, skipper.pos)
                }
            };
            let entry = &data[pos..end];
            let mut done = false;
            if let Some((time_ns, line, offset)) = covered {
                self.shape_key(scope, tag.as_bytes(), entry, 0, entry.len(), &cuts);
                if let Some(t) = self.template(py, tag, entry)? {
                    let app = if self.parse_json && line.first() == Some(&b'{') {
                        match (&t.target_key, std::str::from_utf8(line).map(applog::parse)) {
                            (Some(_), Ok(Outcome::App(app))) => Some(Some(app)),
                            (Some(_), Ok(Outcome::Text)) => Some(None),
                            _ => None, // left to Python
                        }
                    } else {
                        Some(None)
                    };
                    if let Some(app) = app {
                        self.frame(&t, time_ns, line, offset, ingested, app.as_ref());
                        records += 1;
                        done = true;
                    }
                }
            }
            if !done {
                match others.last_mut() {
                    Some(last) if last.1 == pos => last.1 = end,
                    _ => others.push((pos, end)),
                }
            }
            pos = end;
        }
        let frames = PyBytes::new(py, &self.out).unbind();
        if self.out.capacity() > OUT_KEEP {
            self.out = Vec::new();
        }
        Ok((frames, records, pos as i64, others))
    }

    /// Whether `data` is a whole stream of msgpack values (nothing decoded).
    #[staticmethod]
    fn whole(data: &[u8]) -> bool {
        let mut r = Reader::new(data, 0);
        while r.pos < data.len() {
            if r.skip().is_err() {
                return false;
            }
        }
        true
    }

    /// Forget every template (the metadata they were made from may have changed).
    fn clear(&mut self) {
        self.templates.clear();
        self.last_key.clear();
        self.last = None;
    }

    /// Templates held.
    fn __len__(&self) -> usize {
        self.templates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_format_as_rfc3339() {
        assert_eq!(&second_text(0), b"1970-01-01T00:00:00");
        assert_eq!(&second_text(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&second_text(4_102_444_799), b"2099-12-31T23:59:59");
    }

    #[test]
    fn escapes_like_orjson() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a\"b\\c\n\x01\x7f\xc3\xa9");
        assert_eq!(out, b"a\\\"b\\\\c\\n\\u0001\x7f\xc3\xa9");
    }
}
