//! Lines → records → entries: CRI, docker json-file and plain text, with runtime partials
//! (CRI `P` parts, docker logs without a newline) joined per stream and capped at
//! `max_record_bytes` (`parse/_parser.py` without multiline, which stays in Python).
//!
//! Records are written as entries as soon as they are complete; a partial group waits in
//! its stream's join, and the start of its first line is what `safe_offset` reports.

use crate::cri::{self, Stream};
use crate::docker::{self, DockerLine, Verdict};
use crate::entries::{self, Context, FlagTable, Out};
use crate::flags::{INVALID_UTF8, PARSE_ERROR, PARTIAL_JOINED, TRUNCATED};
use crate::lines::Line;
use crate::text;
use crate::utf8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Auto,
    Cri,
    Docker,
    Text,
}

impl Format {
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "auto" => Some(Format::Auto),
            "cri" => Some(Format::Cri),
            "docker" => Some(Format::Docker),
            "text" => Some(Format::Text),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Cri => "cri",
            Format::Docker => "docker",
            Format::Text => "text",
        }
    }
}

/// The reference's reading of a json-file line serde_json refused (`parse_docker`).
pub trait DockerOracle {
    fn parse_docker(&mut self, line: &[u8]) -> Option<DockerLine>;
}

/// Runtime partials of one stream waiting for their last piece.
struct Join {
    stream: Stream,
    time_ns: i128,
    start: i64,
    /// CRI: the kept payload bytes (decoded once joined).
    parts: Vec<u8>,
    /// Docker: the kept `log` text.
    texts: String,
    /// Docker: the original lines (joined by `\n`, the record's `raw` if one was not UTF-8).
    raws: Option<Vec<Vec<u8>>>,
    size: usize,
    capped: bool,
    flags: u8,
    end: i64,
    last_ns: i128,
}

impl Join {
    fn new(stream: Stream, time_ns: i128, start: i64, now_ns: i128, docker: bool) -> Join {
        Join {
            stream,
            time_ns,
            start,
            parts: Vec::new(),
            texts: String::new(),
            raws: if docker { Some(Vec::new()) } else { None },
            size: 0,
            capped: false,
            flags: PARTIAL_JOINED,
            end: start,
            last_ns: now_ns,
        }
    }

    /// Count a part of `size` bytes into the group under `max_record`; how many of its
    /// bytes to keep (`None`: all).
    fn account(
        &mut self,
        size: usize,
        flags: u8,
        end: i64,
        now_ns: i128,
        max_record: usize,
    ) -> Option<usize> {
        self.end = end;
        self.last_ns = now_ns;
        self.flags |= flags;
        if self.capped {
            return Some(0);
        }
        let room = max_record.saturating_sub(self.size);
        if size > room {
            self.capped = true;
            self.flags |= TRUNCATED;
            self.size = max_record;
            return Some(room);
        }
        self.size += size;
        None
    }
}

pub struct Parser {
    pub format: Format,
    max_record: usize,
    timeout_ns: i128,
    joins: Vec<Join>,
    prev_end: Option<i64>,
}

/// Where a line's records go: the entry buffer, with the file's context.
struct Sink<'a> {
    out: &'a mut Out,
    ctx: &'a Context,
    table: &'a FlagTable,
}

impl Sink<'_> {
    #[inline]
    fn record(
        &mut self,
        time_ns: i128,
        stream: Stream,
        message: &str,
        raw: Option<&[u8]>,
        flags: u8,
        end: i64,
    ) {
        entries::write_entry(self.out, self.ctx, self.table, time_ns, stream, message, raw, flags, end);
    }
}

fn lstrip(line: &[u8]) -> &[u8] {
    let skip = line.iter().take_while(|&&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)).count();
    &line[skip..]
}

impl Parser {
    pub fn new(format: Format, max_record: usize, timeout_ns: i128) -> Parser {
        Parser { format, max_record, timeout_ns, joins: Vec::new(), prev_end: None }
    }

    /// The offset a checkpoint may reach: the start of the oldest held line, else `read_offset`.
    pub fn safe_offset(&self, read_offset: i64) -> i64 {
        self.joins.iter().map(|j| j.start).fold(read_offset, i64::min)
    }

    /// Parse complete lines of `buf`; write the records they complete into `out`.
    pub fn feed(
        &mut self,
        buf: &[u8],
        lines: &[Line],
        now_ns: i128,
        ctx: &Context,
        out: &mut Out,
        oracle: &mut dyn DockerOracle,
    ) {
        let Some(first) = lines.first() else {
            return;
        };
        let mut start = first.end - first.len as i64 - 1;
        if let Some(prev) = self.prev_end {
            if prev <= start {
                start = prev;
            }
        }
        self.prev_end = Some(lines[lines.len() - 1].end);
        let mut sink = Sink { out, ctx, table: entries::flag_table() };
        let mut lines = lines;
        if self.format == Format::Auto {
            let skip = self.detect(buf, lines, now_ns, &mut sink);
            if skip == lines.len() {
                return;
            }
            if skip > 0 {
                start = lines[skip - 1].end;
                lines = &lines[skip..];
            }
        }
        let chained = lines.iter().any(|l| l.truncated) || self.format == Format::Text;
        for line in lines {
            let bytes = &buf[line.off..line.off + line.len];
            // the reference's fast loops take a line's start from its length; its per-line
            // loop (used when a line was cut, and for text) from the previous line's end
            let line_start = if chained { start } else { line.end - line.len as i64 - 1 };
            let flags = if line.truncated { TRUNCATED } else { 0 };
            match self.format {
                Format::Cri => self.cri_line(bytes, line_start, line.end, now_ns, flags, &mut sink),
                Format::Docker => {
                    self.docker_line(bytes, line_start, line.end, now_ns, flags, &mut sink, oracle)
                }
                Format::Text => Self::text_line(bytes, line.end, now_ns, flags, &mut sink),
                Format::Auto => unreachable!("the format is known after detection"),
            }
            start = line.end;
        }
    }

    /// Held records whose timeout passed (all of them with `force`), in the order held.
    pub fn flush(&mut self, now_ns: i128, force: bool, ctx: &Context, out: &mut Out) {
        if self.joins.is_empty() {
            return;
        }
        let mut sink = Sink { out, ctx, table: entries::flag_table() };
        let timeout = self.timeout_ns;
        let mut i = 0;
        while i < self.joins.len() {
            if force || now_ns - self.joins[i].last_ns >= timeout {
                let join = self.joins.remove(i);
                Self::finish(join, &mut sink);
            } else {
                i += 1;
            }
        }
    }

    /// Find the format: the first non-blank line starting with `{` is docker, a CRI line
    /// is CRI; lines before it are parse errors. Returns the index of the first line to
    /// parse in the format found.
    fn detect(&mut self, buf: &[u8], lines: &[Line], now_ns: i128, sink: &mut Sink<'_>) -> usize {
        for (index, line) in lines.iter().enumerate() {
            let bytes = &buf[line.off..line.off + line.len];
            let head = lstrip(bytes);
            if head.first() == Some(&b'{') {
                self.format = Format::Docker;
                return index;
            }
            if !head.is_empty() && cri::split_cri(bytes).is_some() {
                self.format = Format::Cri;
                return index;
            }
            let flags = if line.truncated { TRUNCATED } else { 0 };
            Self::error(bytes, line.end, now_ns, flags, sink);
            sink.out.errors_auto += 1;
        }
        lines.len()
    }

    /// A line that parses as nothing: passed on as text, flagged (and counted by the caller).
    fn error(line: &[u8], end: i64, now_ns: i128, flags: u8, sink: &mut Sink<'_>) {
        let d = utf8::decode(line, flags | PARSE_ERROR);
        sink.record(now_ns, Stream::None, &d.text, d.raw.then_some(line), d.flags, end);
    }

    fn join_index(&self, stream: Stream) -> Option<usize> {
        self.joins.iter().position(|j| j.stream == stream)
    }

    fn cri_line(&mut self, line: &[u8], start: i64, end: i64, now_ns: i128, flags: u8, sink: &mut Sink<'_>) {
        let Some(parsed) = cri::split_cri(line) else {
            Self::error(line, end, now_ns, flags, sink);
            sink.out.errors += 1;
            return;
        };
        let max_record = self.max_record;
        match self.join_index(parsed.stream) {
            None if parsed.partial => {
                let mut join = Join::new(parsed.stream, parsed.time_ns, start, now_ns, false);
                add_bytes(&mut join, parsed.payload, flags, end, now_ns, max_record);
                self.joins.push(join);
            }
            None => {
                let d = utf8::decode(parsed.payload, flags);
                sink.record(
                    parsed.time_ns,
                    parsed.stream,
                    &d.text,
                    d.raw.then_some(parsed.payload),
                    d.flags,
                    end,
                );
            }
            Some(i) => {
                add_bytes(&mut self.joins[i], parsed.payload, flags, end, now_ns, max_record);
                if !parsed.partial {
                    let join = self.joins.remove(i);
                    Self::finish(join, sink);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn docker_line(
        &mut self,
        line: &[u8],
        start: i64,
        end: i64,
        now_ns: i128,
        mut flags: u8,
        sink: &mut Sink<'_>,
        oracle: &mut dyn DockerOracle,
    ) {
        let parsed = match docker::parse_docker(line) {
            Verdict::Parsed(p) => Some(p),
            Verdict::NotDocker => None,
            Verdict::Ask => oracle.parse_docker(line),
        };
        let Some(DockerLine { time_ns, stream, log, invalid }) = parsed else {
            Self::error(line, end, now_ns, flags, sink);
            sink.out.errors += 1;
            return;
        };
        let time_ns = time_ns.unwrap_or(now_ns);
        if invalid {
            flags |= INVALID_UTF8;
        }
        let mut log = log;
        let partial = !log.ends_with('\n');
        if !partial {
            log.pop();
        }
        let index = match self.join_index(stream) {
            Some(i) => i,
            None if !partial => {
                sink.record(time_ns, stream, &log, invalid.then_some(line), flags, end);
                return;
            }
            None => {
                self.joins.push(Join::new(stream, time_ns, start, now_ns, true));
                self.joins.len() - 1
            }
        };
        let max_record = self.max_record;
        let join = &mut self.joins[index];
        if let Some(raws) = join.raws.as_mut() {
            raws.push(line.to_vec());
        }
        match join.account(log.len(), flags, end, now_ns, max_record) {
            None => join.texts.push_str(&log),
            Some(0) => {}
            Some(keep) => {
                // the cap's cut, then the sequence it split dropped ("ignore")
                let cut = &log.as_bytes()[..keep];
                let valid = match std::str::from_utf8(cut) {
                    Ok(s) => s.len(),
                    Err(e) => e.valid_up_to(),
                };
                join.texts.push_str(&log[..valid]);
            }
        }
        if !partial {
            let join = self.joins.remove(index);
            Self::finish(join, sink);
        }
    }

    fn text_line(line: &[u8], end: i64, now_ns: i128, flags: u8, sink: &mut Sink<'_>) {
        let d = utf8::decode(line, flags);
        let time_ns =
            if line.first().is_some_and(u8::is_ascii_digit) { text::leading_time(line) } else { None };
        sink.record(time_ns.unwrap_or(now_ns), Stream::None, &d.text, d.raw.then_some(line), d.flags, end);
    }

    /// The record of a partial group (complete, or flushed by timeout).
    fn finish(join: Join, sink: &mut Sink<'_>) {
        if let Some(raws) = &join.raws {
            let raw = (join.flags & INVALID_UTF8 != 0).then(|| raws.join(&b'\n'));
            sink.record(join.time_ns, join.stream, &join.texts, raw.as_deref(), join.flags, join.end);
        } else {
            let d = utf8::decode(&join.parts, join.flags);
            sink.record(
                join.time_ns,
                join.stream,
                &d.text,
                d.raw.then_some(join.parts.as_slice()),
                d.flags,
                join.end,
            );
        }
    }
}

fn add_bytes(join: &mut Join, part: &[u8], flags: u8, end: i64, now_ns: i128, max_record: usize) {
    match join.account(part.len(), flags, end, now_ns, max_record) {
        None => join.parts.extend_from_slice(part),
        Some(keep) => join.parts.extend_from_slice(&part[..keep]),
    }
}
