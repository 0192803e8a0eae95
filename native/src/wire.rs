//! Popping encoded-event frames of a sink queue (`buffer/_segment.py` `decode_wire`, the
//! specification, and the loop of `DiskQueue._decode`): the frames that are whole, have
//! their checksum and decode, as `core.Event`s with `core.Encoded` records. The kernel stops
//! at the first frame that is anything else (cut short, corrupt, another kind, over the
//! limits): the Python loop then handles that frame as it always did.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

const FRAME: usize = 8;
const HEAD: usize = 13; // u8 kind | i64 time_ns | u16 tag length | u16 id length
const NO_ID: usize = 0xffff;

fn le16(b: &[u8]) -> usize {
    usize::from(u16::from_le_bytes([b[0], b[1]]))
}

/// `(events, position after them, nbytes)`: frames of `buf` from `pos` while `room` and
/// the byte budget (`max_bytes`, `nbytes` taken so far; the first frame of a take always
/// fits) allow.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn take_wire_frames<'py>(
    py: Python<'py>,
    buf: &[u8],
    pos: usize,
    room: usize,
    nbytes: usize,
    max_bytes: usize,
    has_events: bool,
    finalizer: &Bound<'py, PyAny>,
    event: &Bound<'py, PyAny>,
    encoded: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, usize, usize)> {
    let out = PyList::empty(py);
    let (mut pos, mut nbytes, mut room) = (pos, nbytes, room);
    let mut last_tag: Option<(&[u8], Bound<'py, PyString>)> = None;
    while room > 0 && buf.len() - pos.min(buf.len()) >= FRAME {
        let h = &buf[pos..pos + FRAME];
        let length = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let start = pos + FRAME;
        let Some(end) = start.checked_add(length).filter(|end| *end <= buf.len()) else {
            break;
        };
        if nbytes + length > max_bytes && (has_events || !out.is_empty()) {
            break;
        }
        let payload = &buf[start..end];
        if length < HEAD || payload[0] != 0 || crc32fast::hash(payload) != crc {
            break;
        }
        let time_ns = i64::from_le_bytes(payload[1..9].try_into().unwrap_or_default());
        let (tag_len, id_len) = (le16(&payload[9..11]), le16(&payload[11..13]));
        let id_bytes = if id_len == NO_ID { 0 } else { id_len };
        if HEAD + tag_len + id_bytes > length {
            break;
        }
        let tag = &payload[HEAD..HEAD + tag_len];
        let ident = &payload[HEAD + tag_len..HEAD + tag_len + id_bytes];
        let (Ok(tag_text), Ok(ident_text)) = (std::str::from_utf8(tag), std::str::from_utf8(ident)) else {
            break;
        };
        let tag_obj = match &last_tag {
            Some((bytes, obj)) if *bytes == tag => obj.clone(),
            _ => {
                let obj = PyString::new(py, tag_text);
                last_tag = Some((tag, obj.clone()));
                obj
            }
        };
        let doc_id =
            if id_len == NO_ID { py.None().into_bound(py) } else { PyString::new(py, ident_text).into_any() };
        let data = PyBytes::new(py, &payload[HEAD + tag_len + id_bytes..]);
        let record = encoded.call1((doc_id, data))?;
        out.append(event.call1((tag_obj, time_ns, record, finalizer, length))?)?;
        nbytes += length;
        room -= 1;
        pos = end;
    }
    Ok((out, pos, nbytes))
}
