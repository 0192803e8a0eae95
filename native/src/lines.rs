//! The read-buffer split: bytes read from a file → complete lines, as the tailer's
//! `read_chunk` cuts them (`kloghub/kernels/_reference.py` `_cut`).
//!
//! Bytes after the last newline wait for the next read. A line longer than
//! `max_line_bytes` is cut to that length (flagged); one that has no newline yet when it
//! passes the limit is emitted as its head (ending at the read position) and the rest of
//! it is skipped up to its newline.

/// One cut line: where it is in the buffer, its end offset in the file, whether it was cut.
pub struct Line {
    pub off: usize,
    pub len: usize,
    pub end: i64,
    pub truncated: bool,
}

pub struct Cutter {
    leftover: Vec<u8>,
    skipping: bool,
    pub read_offset: i64,
    max_line: usize,
}

impl Cutter {
    pub fn new(offset: i64, max_line: usize) -> Self {
        Cutter { leftover: Vec::new(), skipping: false, read_offset: offset, max_line }
    }

    /// Bytes read but waiting for their newline.
    pub fn held(&self) -> usize {
        self.leftover.len()
    }

    /// Cut `data` (contiguous from `read_offset`) into `lines`; returns the buffer the
    /// lines point into (`data` itself, or `scratch` holding the leftover and `data`).
    pub fn cut<'a>(&mut self, data: &'a [u8], scratch: &'a mut Vec<u8>, lines: &mut Vec<Line>) -> &'a [u8] {
        lines.clear();
        let mut start = self.read_offset - self.leftover.len() as i64;
        self.read_offset += data.len() as i64;
        let mut data = data;
        if self.skipping {
            let Some(cut) = memchr::memchr(b'\n', data) else {
                return &[];
            };
            start += self.leftover.len() as i64 + cut as i64 + 1;
            data = &data[cut + 1..];
            self.leftover.clear();
            self.skipping = false;
        }
        let buf: &'a [u8] = if self.leftover.is_empty() {
            data
        } else {
            scratch.clear();
            scratch.extend_from_slice(&self.leftover);
            scratch.extend_from_slice(data);
            scratch
        };
        let limit = self.max_line;
        let Some(last) = memchr::memrchr(b'\n', buf) else {
            self.hold_or_cut(buf, 0, lines);
            return buf;
        };
        let mut pos = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[..last]).chain(std::iter::once(last)) {
            let len = nl - pos;
            lines.push(Line {
                off: pos,
                len: len.min(limit),
                end: start + nl as i64 + 1,
                truncated: len > limit,
            });
            pos = nl + 1;
        }
        self.hold_or_cut(buf, last + 1, lines);
        buf
    }

    /// Keep `buf[from..]` for the next read, or — past the limit — emit its head and skip
    /// the rest of that line.
    fn hold_or_cut(&mut self, buf: &[u8], from: usize, lines: &mut Vec<Line>) {
        let rest = &buf[from..];
        if rest.len() > self.max_line {
            lines.push(Line { off: from, len: self.max_line, end: self.read_offset, truncated: true });
            self.leftover.clear();
            self.skipping = true;
        } else {
            self.leftover.clear();
            self.leftover.extend_from_slice(rest);
        }
    }
}
