//! The Python-visible file encoder: one tailed file's bytes → entries (`kloghub.kernels`
//! wraps it; the Python reference is `kernels._reference.ReferenceFileEncoder`).

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

/// Asks the reference's `parse_docker` about the lines serde_json refused. The kernel runs
/// detached from the interpreter; this attaches for the (rare) call.
struct PyOracle<'a> {
    func: &'a Py<PyAny>,
    error: Option<PyErr>,
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
        result.unwrap_or_else(|err: PyErr| {
            self.error = Some(err);
            None
        })
    }
}

#[pyclass(module = "kloghub._native")]
pub struct FileEncoder {
    cutter: Cutter,
    parser: Parser,
    ctx: Context,
    parse_docker: Py<PyAny>,
    scratch: Vec<u8>,
    lines: Vec<Line>,
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
    /// `(entries, lines, truncated lines, error of the docker oracle)` of one feed.
    fn feed_detached(&mut self, data: &[u8], now_ns: i128) -> (Out, usize, usize, Option<PyErr>) {
        let mut out = Out::default();
        let mut lines = std::mem::take(&mut self.lines);
        let mut scratch = std::mem::take(&mut self.scratch);
        let buf = self.cutter.cut(data, &mut scratch, &mut lines);
        let truncated = lines.iter().filter(|l| l.truncated).count();
        // every entry is its message plus the context pieces and ~64 bytes of keys and forms
        let per_entry = 64 + self.ctx.kubernetes.len() + self.ctx.file.len() + self.ctx.tail.len();
        out.buf.reserve(buf.len() + lines.len() * per_entry);
        let mut oracle = PyOracle { func: &self.parse_docker, error: None };
        self.parser.feed(buf, &lines, now_ns, &self.ctx, &mut out, &mut oracle);
        let error = oracle.error;
        let count = lines.len();
        lines.clear();
        self.lines = lines;
        if scratch.capacity() > (8 << 20) {
            scratch = Vec::new();
        }
        self.scratch = scratch;
        (out, count, truncated, error)
    }

    fn produced(py: Python<'_>, out: Out, lines: usize, truncated: usize) -> Produced {
        (
            PyBytes::new(py, &out.buf).unbind(),
            out.count,
            lines,
            out.end_offset,
            truncated,
            out.invalid_utf8,
            out.errors_auto,
            out.errors,
        )
    }
}

#[pymethods]
impl FileEncoder {
    /// `FileEncoder(fmt, max_line_bytes, max_record_bytes, flush_timeout_ns, record_head,
    /// kubernetes, file, tail, kloghub_size, offset, parse_docker)`; the context pieces are
    /// an `EntryContext`'s.
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
    ) -> PyResult<Self> {
        let format = Format::parse(fmt)
            .ok_or_else(|| PyValueError::new_err(format!("format {fmt:?} is not covered")))?;
        Ok(FileEncoder {
            cutter: Cutter::new(offset, max_line_bytes),
            parser: Parser::new(format, max_record_bytes, flush_timeout_ns),
            ctx: context(record_head, kubernetes, file, tail, kloghub_size),
            parse_docker,
            scratch: Vec::new(),
            lines: Vec::new(),
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
            return Ok(Self::produced(py, Out::default(), 0, 0));
        }
        let (out, count, truncated, error) = py.detach(|| self.feed_detached(data, now_ns));
        if let Some(err) = error {
            return Err(err);
        }
        Ok(Self::produced(py, out, count, truncated))
    }

    /// Held records whose timeout passed (all of them with `force`).
    #[pyo3(signature = (now_ns, force = false))]
    fn flush(&mut self, py: Python<'_>, now_ns: i128, force: bool) -> Produced {
        let mut out = Out::default();
        self.parser.flush(now_ns, force, &self.ctx, &mut out);
        Self::produced(py, out, 0, 0)
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
