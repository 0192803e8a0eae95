//! Docker json-file lines: `{"log": "...\n", "stream": "stdout", "time": "...Z"}`
//! (`parse/_docker.py` `parse_docker`).
//!
//! The line is read with serde_json into just the three fields (the last of duplicated
//! keys wins, as in orjson); other values are parsed in full, so that what the reference's
//! orjson refuses (a lone surrogate escape anywhere, say) is refused here too. A line that
//! serde_json refuses is handed back to the caller, which asks the reference's
//! `parse_docker` (orjson's exact grammar: its depth limit, its number rules) — broken lines
//! are rare, and that keeps the two kernels identical on them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::cri::Stream;
use crate::timestamp;

/// The reading of one json-file line.
pub struct DockerLine {
    /// From the line's `time`; `None`: the caller uses the read time.
    pub time_ns: Option<i128>,
    pub stream: Stream,
    pub log: String,
    /// The line was not UTF-8: it was read after U+FFFD replacement.
    pub invalid: bool,
}

/// What serde_json said about a line.
pub enum Verdict {
    Parsed(DockerLine),
    /// Valid JSON, but not a json-file line (no string `log`, not an object).
    NotDocker,
    /// serde_json refused it: the reference must decide.
    Ask,
}

enum Field<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde_json::Value>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<Cow<'de, str>, serde_json::Value>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// The top-level value: an object's three fields, or "not an object".
enum Top<'a> {
    Object { log: Option<Field<'a>>, stream: Option<Field<'a>>, time: Option<Field<'a>> },
    NotObject,
}

impl<'de> de::Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut log, mut stream, mut time) = (None, None, None);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: Field<'de> = map.next_value()?;
                    match key.as_ref() {
                        "log" => log = Some(value),
                        "stream" => stream = Some(value),
                        "time" => time = Some(value),
                        _ => {}
                    }
                }
                Ok(Top::Object { log, stream, time })
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<serde_json::Value>()?.is_some() {}
                Ok(Top::NotObject)
            }
            fn visit_borrowed_str<E: de::Error>(self, _: &'de str) -> Result<Self::Value, E> {
                Ok(Top::NotObject)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Top::NotObject)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Top::NotObject)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Top::NotObject)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Top::NotObject)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Top::NotObject)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Top::NotObject)
            }
        }
        d.deserialize_any(V)
    }
}

fn read(text: &str, invalid: bool) -> Verdict {
    let top: Top<'_> = match serde_json::from_str(text) {
        Ok(top) => top,
        Err(_) => return Verdict::Ask,
    };
    let Top::Object { log, stream, time } = top else {
        return Verdict::NotDocker;
    };
    let Some(Field::Str(log)) = log else {
        return Verdict::NotDocker;
    };
    let stream = match stream {
        Some(Field::Str(s)) if s == "stderr" => Stream::Stderr,
        _ => Stream::Stdout,
    };
    let time_ns = match time {
        Some(Field::Str(t)) if t.is_ascii() => timestamp::parse_rfc3339(t.as_bytes()),
        _ => None,
    };
    Verdict::Parsed(DockerLine { time_ns, stream, log: log.into_owned(), invalid })
}

/// The json-file reading of `line` (see the module docstring for `Ask`).
pub fn parse_docker(line: &[u8]) -> Verdict {
    match std::str::from_utf8(line) {
        Ok(text) => read(text, false),
        Err(_) => read(&String::from_utf8_lossy(line), true),
    }
}
