//! The Python-visible file encoder: one tailed file's bytes → entries (`kloghub.kernels`
//! wraps it; the Python reference is `kernels._reference.ReferenceFileEncoder`).

use std::cell::RefCell;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::cri::Stream;
use crate::docker::DockerLine;
use crate::entries::{Context, Out};
use crate::lines::{Cutter, Line};
use crate::parser::{DockerOracle, Format, Parser};

/// `(entries, count, lines, end_offset, truncated, invalid_utf8, errors_auto, errors)`.
type Produced = (Py<PyBytes>, usize, usize, i64, usize, usize, usize, usize);

/// Asks the reference (`parse_docker`, `load_json`) about the lines serde_json refused. The kernel runs
/// detached from the interpreter; this attaches for the (rare) call.
struct PyOracle<'a> {
    func: &'a Py<PyAny>,
    load_json: &'a Py<PyAny>,
    error: Option<PyErr>,
}

impl PyOracle<'_> {
    /// The value of a call, keeping its error for the caller (the kernel goes on meanwhile,
    /// the feed then raises it).
    fn keep_error<T>(&mut self, result: PyResult<Option<T>>) -> Option<T> {
        result.unwrap_or_else(|err: PyErr| {
            self.error = Some(err);
            None
        })
    }
}

impl DockerOracle for PyOracle<'_> {
    fn parse_docker(&mut self, line: &[u8]) -> Option<DockerLine> {
        if self.error.is_some() {
            return None;
        }
        let result = Python::attach(|py| {
            let value = self.func.bind(py).call1((PyBytes::new(py, line),))?;
            if value.is_none() {
                return Ok(None);
            }
            let (time_ns, stream, log, invalid): (Option<i128>, String, String, bool) = value.extract()?;
            let stream = if stream == "stderr" { Stream::Stderr } else { Stream::Stdout };
            Ok(Some(DockerLine { time_ns, stream, log, invalid }))
        });
        self.keep_error(result)
    }

    fn load_json(&mut self, line: &[u8]) -> Option<(Option<i128>, bool)> {
        if self.error.is_some() {
            return None;
        }
        let result = Python::attach(|py| {
            let value = self.load_json.bind(py).call1((PyBytes::new(py, line),))?;
            if value.is_none() {
                return Ok(None);
            }
            Ok(Some(value.extract::<(Option<i128>, bool)>()?))
        });
        self.keep_error(result)
    }
}

/// The working buffers of a feed: the entries being written, the leftover joined with the
/// read, the cut lines. They are kept between feeds (a fresh multi-MiB buffer per chunk
/// costs its page faults) but per thread, not per file: an agent tailing 50 files holds
/// one set (~3 MiB for a 1 MiB read), not 50.
#[derive(Default)]
struct Buffers {
    out: Vec<u8>,
    scratch: Vec<u8>,
    lines: Vec<Line>,
}

/// Capacity past which a buffer is freed after its feed (an unusually large read or line).
const KEEP_OUT: usize = 16 << 20;
const KEEP_SCRATCH: usize = 8 << 20;

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// The thread's buffers, taken (a nested feed on the same thread gets empty ones).
fn take_buffers() -> Buffers {
    BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()))
}

/// Give buffers back for the next feed on this thread, unless they grew unusually large.
fn keep_buffers(mut buffers: Buffers) {
    if buffers.out.capacity() > KEEP_OUT {
        buffers.out = Vec::new();
    }
    if buffers.scratch.capacity() > KEEP_SCRATCH {
        buffers.scratch = Vec::new();
    }
    buffers.lines.clear();
    BUFFERS.with(|b| *b.borrow_mut() = buffers);
}

#[pyclass(module = "kloghub._native")]
pub struct FileEncoder {
    cutter: Cutter,
    parser: Parser,
    ctx: Context,
    parse_docker: Py<PyAny>,
    load_json: Py<PyAny>,
}

fn context(record_head: u8, kubernetes: &[u8], file: &[u8], tail: &[u8], kloghub_size: u8) -> Context {
    Context {
        record_head,
        kubernetes: kubernetes.to_vec(),
        file: file.to_vec(),
        tail: tail.to_vec(),
        kloghub_size,
    }
}

impl FileEncoder {
    /// `(entries, lines, truncated lines, error of the docker oracle)` of one feed, written
    /// into `buffers.out`.
    fn feed_detached(
        &mut self,
        data: &[u8],
        now_ns: i128,
        buffers: &mut Buffers,
    ) -> (Out, usize, usize, Option<PyErr>) {
        let mut out = Out { buf: std::mem::take(&mut buffers.out), ..Out::default() };
        out.buf.clear();
        let buf = self.cutter.cut(data, &mut buffers.scratch, &mut buffers.lines);
        let lines = &buffers.lines;
        let truncated = lines.iter().filter(|l| l.truncated).count();
        // every entry is its message plus the context pieces and ~64 bytes of keys and forms
        let per_entry = 64 + self.ctx.kubernetes.len() + self.ctx.file.len() + self.ctx.tail.len();
        out.buf.reserve(buf.len() + lines.len() * per_entry);
        let mut oracle = PyOracle { func: &self.parse_docker, load_json: &self.load_json, error: None };
        self.parser.feed(buf, lines, now_ns, &self.ctx, &mut out, &mut oracle);
        let error = oracle.error;
        (out, lines.len(), truncated, error)
    }

    /// The Python result of a call (the entries copied out of the buffer, which is kept).
    fn produced(py: Python<'_>, out: &Out, lines: usize, truncated: usize) -> Produced {
        let entries = PyBytes::new(py, &out.buf).unbind();
        (entries, out.count, lines, out.end_offset, truncated, out.invalid_utf8, out.errors_auto, out.errors)
    }
}

#[pymethods]
impl FileEncoder {
    /// `FileEncoder(fmt, max_line_bytes, max_record_bytes, flush_timeout_ns, record_head,
    /// kubernetes, file, tail, kloghub_size, offset, parse_docker, load_json)`; the context
    /// pieces are an `EntryContext`'s; the two callables are the reference's readings of
    /// the JSON lines serde_json refuses.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        fmt: &str,
        max_line_bytes: usize,
        max_record_bytes: usize,
        flush_timeout_ns: i128,
        record_head: u8,
        kubernetes: &[u8],
        file: &[u8],
        tail: &[u8],
        kloghub_size: u8,
        offset: i64,
        parse_docker: Py<PyAny>,
        load_json: Py<PyAny>,
    ) -> PyResult<Self> {
        let format = Format::parse(fmt)
            .ok_or_else(|| PyValueError::new_err(format!("format {fmt:?} is not covered")))?;
        Ok(FileEncoder {
            cutter: Cutter::new(offset, max_line_bytes),
            parser: Parser::new(format, max_record_bytes, flush_timeout_ns),
            ctx: context(record_head, kubernetes, file, tail, kloghub_size),
            parse_docker,
            load_json,
        })
    }

    /// Replace the context pieces (the pod's metadata changed).
    fn set_context(
        &mut self,
        record_head: u8,
        kubernetes: &[u8],
        file: &[u8],
        tail: &[u8],
        kloghub_size: u8,
    ) {
        self.ctx = context(record_head, kubernetes, file, tail, kloghub_size);
    }

    /// Bytes read from the file, contiguous from `read_offset`. The work runs without the
    /// interpreter lock: other threads (other files' encoders) run meanwhile.
    fn feed(&mut self, py: Python<'_>, data: &[u8], now_ns: i128) -> PyResult<Produced> {
        if data.is_empty() {
            return Ok(Self::produced(py, &Out::default(), 0, 0));
        }
        let mut buffers = take_buffers();
        let (out, count, truncated, error) = py.detach(|| self.feed_detached(data, now_ns, &mut buffers));
        let result = Self::produced(py, &out, count, truncated);
        buffers.out = out.buf;
        keep_buffers(buffers);
        match error {
            Some(err) => Err(err),
            None => Ok(result),
        }
    }

    /// Held records whose timeout passed (all of them with `force`).
    #[pyo3(signature = (now_ns, force = false))]
    fn flush(&mut self, py: Python<'_>, now_ns: i128, force: bool) -> Produced {
        let mut out = Out::default();
        self.parser.flush(now_ns, force, &self.ctx, &mut out);
        Self::produced(py, &out, 0, 0)
    }

    /// Every byte before it is in an entry already returned.
    fn safe_offset(&self) -> i64 {
        self.parser.safe_offset(self.cutter.read_offset - self.cutter.held() as i64)
    }

    /// Offset after the last byte fed.
    #[getter]
    fn read_offset(&self) -> i64 {
        self.cutter.read_offset
    }

    /// The file's format (`auto` until the first line decided it).
    #[getter]
    fn format(&self) -> &'static str {
        self.parser.format.name()
    }
}
