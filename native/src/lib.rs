//! kloghub's per-chunk data-plane kernels, the extension module `kloghub._native`.
//!
//! Each kernel has a Python reference that is its executable specification (a property
//! test holds the two to identical output):
//!
//! - `lines`: the read-buffer split (`kernels/_reference.py`);
//! - `cri`, `docker`, `text`, `timestamp`, `utf8`, `parser`: lines → records (`kloghub.parse`);
//! - `entries`: records → msgpack entries (`kernels/_entries.py`);
//! - `encoder`: the Python class tying them together for one tailed file;
//! - `checksum`: the disk buffer's frame CRC-32 (`zlib.crc32`);
//! - `msgpack`, `applog`, `documents`: a Forward request's entries → the collector's sink-queue frames
//!   (`collector/_fastpath.py`, spec: the normalizer and `sinks._bulk.encode`);
//! - `wire`: a sink queue's encoded-event frames → events (`buffer/_segment.py` `decode_wire`).

mod applog;
mod checksum;
mod cri;
mod docker;
mod documents;
mod encoder;
mod entries;
mod flags;
mod lines;
mod msgpack;
mod parser;
mod text;
mod timestamp;
mod utf8;
mod wire;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<encoder::FileEncoder>()?;
    m.add_function(wrap_pyfunction!(checksum::crc32, m)?)?;
    m.add_class::<documents::BulkDocuments>()?;
    m.add_function(wrap_pyfunction!(wire::take_wire_frames, m)?)?;
    m.add("KERNELS_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
