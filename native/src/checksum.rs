//! CRC-32 (IEEE 802.3, zlib's `crc32`) of the disk buffer's frames, with the field's crate
//! (`crc32fast`: PCLMULQDQ/SIMD where the CPU has it, ~4x zlib 1.2's table loop here).
//! Same polynomial, same value as `zlib.crc32`, so the segment format does not change; the
//! Python reference is `zlib.crc32` itself (`tests/kernels/test_checksum.py`).

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Bytes past which the checksum runs without the interpreter lock.
const DETACH_BYTES: usize = 64 * 1024;

/// `crc32(data, value=0)`: as `zlib.crc32(data, value)`, for any C-contiguous buffer.
#[pyfunction]
#[pyo3(signature = (data, value = 0))]
pub fn crc32(py: Python<'_>, data: &Bound<'_, PyAny>, value: u32) -> PyResult<u32> {
    let buffer = PyBuffer::<u8>::get(data)?;
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err("crc32 needs a contiguous buffer"));
    }
    let len = buffer.len_bytes();
    let ptr = buffer.buf_ptr() as usize;
    // SAFETY: the buffer stays acquired (and its exporter alive) until `buffer` drops at the
    // end of this function; the bytes are only read.
    let crc = move || {
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let mut hasher = crc32fast::Hasher::new_with_initial(value);
        hasher.update(bytes);
        hasher.finalize()
    };
    let result = if len >= DETACH_BYTES { py.detach(crc) } else { crc() };
    drop(buffer);
    Ok(result)
}
