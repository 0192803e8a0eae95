//! Reading msgpack without building values: the head of each value (its kind and length)
//! and skipping whole values, for the collector's request kernel (`documents`).
//!
//! Forms follow the msgpack specification; `rmp::Marker` names the first byte.

use rmp::Marker;

/// The value at the reader's position could not be read (bad marker, cut short).
#[derive(Debug)]
pub struct Malformed;

/// A value's kind and, for strings, binaries, containers and extensions, its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    Nil,
    Bool,
    UInt(u64),
    Int(i64),
    Float,
    Str(usize),
    Bin(usize),
    Array(usize),
    Map(usize),
    Ext(i8, usize),
}

/// A cursor over a buffer of msgpack values.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(Malformed)?;
        let bytes = self.buf.get(self.pos..end).ok_or(Malformed)?;
        self.pos = end;
        Ok(bytes)
    }

    fn be(&mut self, n: usize) -> Result<u64, Malformed> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, Malformed> {
        usize::try_from(self.be(n)?).map_err(|_| Malformed)
    }

    /// Reads the head of the next value (for an extension, its type too); the payload of
    /// strings, binaries and extensions is next.
    pub fn head(&mut self) -> Result<Head, Malformed> {
        let byte = *self.buf.get(self.pos).ok_or(Malformed)?;
        self.pos += 1;
        Ok(match Marker::from_u8(byte) {
            Marker::FixPos(v) => Head::UInt(u64::from(v)),
            Marker::FixNeg(v) => Head::Int(i64::from(v)),
            Marker::Null => Head::Nil,
            Marker::True | Marker::False => Head::Bool,
            Marker::U8 => Head::UInt(self.be(1)?),
            Marker::U16 => Head::UInt(self.be(2)?),
            Marker::U32 => Head::UInt(self.be(4)?),
            Marker::U64 => Head::UInt(self.be(8)?),
            Marker::I8 => Head::Int(i64::from(self.be(1)? as u8 as i8)),
            Marker::I16 => Head::Int(i64::from(self.be(2)? as u16 as i16)),
            Marker::I32 => Head::Int(i64::from(self.be(4)? as u32 as i32)),
            Marker::I64 => Head::Int(self.be(8)? as i64),
            Marker::F32 => {
                self.take(4)?;
                Head::Float
            }
            Marker::F64 => {
                self.take(8)?;
                Head::Float
            }
            Marker::FixStr(n) => Head::Str(usize::from(n)),
            Marker::Str8 => Head::Str(self.len(1)?),
            Marker::Str16 => Head::Str(self.len(2)?),
            Marker::Str32 => Head::Str(self.len(4)?),
            Marker::Bin8 => Head::Bin(self.len(1)?),
            Marker::Bin16 => Head::Bin(self.len(2)?),
            Marker::Bin32 => Head::Bin(self.len(4)?),
            Marker::FixArray(n) => Head::Array(usize::from(n)),
            Marker::Array16 => Head::Array(self.len(2)?),
            Marker::Array32 => Head::Array(self.len(4)?),
            Marker::FixMap(n) => Head::Map(usize::from(n)),
            Marker::Map16 => Head::Map(self.len(2)?),
            Marker::Map32 => Head::Map(self.len(4)?),
            Marker::FixExt1 => self.ext(1)?,
            Marker::FixExt2 => self.ext(2)?,
            Marker::FixExt4 => self.ext(4)?,
            Marker::FixExt8 => self.ext(8)?,
            Marker::FixExt16 => self.ext(16)?,
            Marker::Ext8 => {
                let n = self.len(1)?;
                self.ext(n)?
            }
            Marker::Ext16 => {
                let n = self.len(2)?;
                self.ext(n)?
            }
            Marker::Ext32 => {
                let n = self.len(4)?;
                self.ext(n)?
            }
            Marker::Reserved => return Err(Malformed),
        })
    }

    fn ext(&mut self, n: usize) -> Result<Head, Malformed> {
        let ty = self.take(1)?[0] as i8;
        Ok(Head::Ext(ty, n))
    }

    /// Skips the payload that follows `head` (strings, binaries and extensions); the
    /// elements of a container are values of their own.
    pub fn skip_payload(&mut self, head: Head) -> Result<(), Malformed> {
        if let Head::Str(n) | Head::Bin(n) | Head::Ext(_, n) = head {
            self.take(n)?;
        }
        Ok(())
    }

    /// Skips one whole value (iteratively: nesting depth costs no stack).
    pub fn skip(&mut self) -> Result<(), Malformed> {
        let mut remaining: u64 = 1;
        while remaining > 0 {
            remaining -= 1;
            let head = self.head()?;
            match head {
                Head::Array(n) => remaining += n as u64,
                Head::Map(n) => remaining += 2 * n as u64,
                other => self.skip_payload(other)?,
            }
        }
        Ok(())
    }

    /// The bytes of a string value next, or `None` (nothing consumed) when it is another kind.
    pub fn str_bytes(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        let start = self.pos;
        match self.head()? {
            Head::Str(n) => Ok(Some(self.take(n)?)),
            _ => {
                self.pos = start;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_walks_nested_values() {
        // [1, {"a": [nil, true]}, "xy", bin(2), fixext8]
        let buf = [
            0x95, 0x01, 0x81, 0xa1, b'a', 0x92, 0xc0, 0xc3, 0xa2, b'x', b'y', 0xc4, 0x02, 0, 0, 0xd7, 0x00,
            0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let mut r = Reader::new(&buf, 0);
        r.skip().unwrap();
        assert_eq!(r.pos, buf.len());
        let mut cut = Reader::new(&buf[..buf.len() - 1], 0);
        assert!(cut.skip().is_err());
    }
}
