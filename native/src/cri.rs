//! CRI log lines: `<timestamp> <stream> <tags> <message>` (`parse/_cri.py` `split_cri`).

use crate::timestamp;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Node and audit logs, and lines that did not parse.
    None,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::None => "",
        }
    }
}

/// One CRI line, read.
pub struct CriLine<'a> {
    pub time_ns: i128,
    pub stream: Stream,
    pub partial: bool,
    pub payload: &'a [u8],
}

/// The CRI reading of `line`, or `None` if it is not one.
///
/// Tags are split on `:`; the first is `P` (partial) or `F` (full), the others are
/// ignored. A third field that is no tag is the tagless format of early runtimes: then
/// everything after the stream is the message.
pub fn split_cri(line: &[u8]) -> Option<CriLine<'_>> {
    let sp1 = memchr::memchr(b' ', line)?;
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest)?;
    let stream = match &rest[..sp2] {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let time_ns = timestamp::parse_rfc3339(&line[..sp1])?;
    let after = &rest[sp2 + 1..]; // the tags and the message (bytes.split(b" ", 3)[2:])
    let (tags, payload) = match memchr::memchr(b' ', after) {
        Some(sp3) => (&after[..sp3], &after[sp3 + 1..]),
        None => (after, &after[after.len()..]),
    };
    let tag = match memchr::memchr(b':', tags) {
        Some(colon) => &tags[..colon],
        None => tags,
    };
    match tag {
        b"F" => Some(CriLine { time_ns, stream, partial: false, payload }),
        b"P" => Some(CriLine { time_ns, stream, partial: true, payload }),
        _ => Some(CriLine { time_ns, stream, partial: false, payload: after }),
    }
}
