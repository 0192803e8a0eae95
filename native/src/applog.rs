//! JSON application log lines → the ECS fields of their document, as
//! `normalize/_applog.py` (the specification) makes them, and JSON text written as orjson
//! writes it.
//!
//! The line is read with serde_json into an ordered tree that keeps Python's dict
//! semantics (a duplicated key keeps its first position and its last value). Whatever
//! this reading cannot promise to agree with orjson on — a line serde_json refuses, objects
//! of very many keys — is `Unsure`: the caller leaves the record to the Python path.

use std::fmt;
use std::io::Write;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::documents::escape_into;

const MAX_DEPTH: usize = 16;
const MAX_TEXT: usize = 8191;
const MAX_KEYS: usize = 512;

/// A JSON value in orjson's reading.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

struct JVisitor;

impl<'de> Visitor<'de> for JVisitor {
    type Value = J;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<J, E> {
        Ok(J::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<J, E> {
        Ok(J::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<J, E> {
        Ok(J::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<J, E> {
        Ok(J::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<J, E> {
        Ok(J::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<J, E> {
        Ok(J::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<J>()? {
            items.push(item);
        }
        Ok(J::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut pairs: Vec<(String, J)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<J>()?;
            if let Some(slot) = pairs.iter_mut().find(|(k, _)| *k == key) {
                slot.1 = value; // a dict keeps the first position, the last value
            } else {
                if pairs.len() >= MAX_KEYS {
                    return Err(de::Error::custom("too many keys"));
                }
                pairs.push((key, value));
            }
        }
        Ok(J::Obj(pairs))
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        d.deserialize_any(JVisitor)
    }
}

/// The shortest digits of `v` that read back, in one of two styles: Python's
/// `repr(float)` (`str()` of a level or an error text: fixed notation for exponents
/// −4 … 15, else `d.ddde±XX`) or orjson's (JSON numbers: fixed for −5 … 15, else
/// `d.ddde-X` / `d.ddde+X`, the exponent unpadded).
pub fn write_float(out: &mut Vec<u8>, v: f64, python: bool) {
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0.0" } else { b"0.0" });
        return;
    }
    let sci = format!("{v:e}"); // shortest round-trip digits: "-1.2345e-7"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if negative {
        out.push(b'-');
    }
    let lowest = if python { -4 } else { -5 };
    if (lowest..16).contains(&exp) {
        if exp < 0 {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
            out.extend_from_slice(digits.as_bytes());
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.extend_from_slice(digits.as_bytes());
                out.extend(std::iter::repeat_n(b'0', point - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits.as_bytes()[..point]);
                out.push(b'.');
                out.extend_from_slice(&digits.as_bytes()[point..]);
            }
        }
    } else {
        out.push(digits.as_bytes()[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits.as_bytes()[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        if python {
            let _ = write!(out, "e{sign}{:02}", exp.abs());
        } else {
            let _ = write!(out, "e{sign}{}", exp.abs());
        }
    }
}

/// `value` as orjson writes it (compact).
pub fn write_json(out: &mut Vec<u8>, value: &J) {
    match value {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(true) => out.extend_from_slice(b"true"),
        J::Bool(false) => out.extend_from_slice(b"false"),
        J::Int(v) => {
            let _ = write!(out, "{v}");
        }
        J::UInt(v) => {
            let _ = write!(out, "{v}");
        }
        J::Float(v) => write_float(out, *v, false),
        J::Str(s) => write_str(out, s),
        J::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        J::Obj(pairs) => write_rest(out, pairs),
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escape_into(out, s.as_bytes());
    out.push(b'"');
}

/// `{"k":v,…}`, each value written by `value`.
fn write_object<'a, V: 'a>(
    out: &mut Vec<u8>,
    pairs: impl Iterator<Item = (&'a str, V)>,
    value: impl Fn(&mut Vec<u8>, V),
) {
    out.push(b'{');
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

/// What a JSON line gives (`_applog.AppLog`).
pub struct App {
    pub message: Option<String>,
    pub level: Option<String>,
    /// `error.*` fields in the order they were set.
    pub error: Vec<(&'static str, String)>,
    /// The remaining keys (the JSON target's object).
    pub rest: Vec<(String, J)>,
}

pub enum Outcome {
    /// The line stays text (not an object, or past the field-type limits).
    Text,
    App(App),
    /// Left to the Python path.
    Unsure,
}

const PINO: [(u64, &str); 6] =
    [(10, "trace"), (20, "debug"), (30, "info"), (40, "warn"), (50, "error"), (60, "fatal")];

fn int_text(v: &J) -> Option<String> {
    match v {
        J::Int(i) => Some(i.to_string()),
        J::UInt(u) => Some(u.to_string()),
        _ => None,
    }
}

fn float_text(v: f64) -> String {
    let mut out = Vec::new();
    write_float(&mut out, v, true);
    String::from_utf8(out).unwrap_or_default()
}

/// `_applog._level`.
fn level_of(v: &J) -> Option<String> {
    match v {
        J::Str(s) if !s.is_empty() => Some(s.clone()),
        J::UInt(u) => Some(
            PINO.iter().find(|(n, _)| n == u).map_or_else(|| u.to_string(), |(_, name)| (*name).to_owned()),
        ),
        J::Int(_) => int_text(v),
        J::Float(f) => Some(float_text(*f)),
        _ => None,
    }
}

/// `_applog._as_text`.
fn as_text(v: &J) -> Option<String> {
    match v {
        J::Str(s) => Some(s.clone()),
        J::Float(f) => Some(float_text(*f)),
        _ => int_text(v),
    }
}

fn position(pairs: &[(String, J)], key: &str) -> Option<usize> {
    pairs.iter().position(|(k, _)| k == key)
}

fn has(error: &[(&'static str, String)], field: &str) -> bool {
    error.iter().any(|(f, _)| *f == field)
}

const ERROR_FIELDS: [(&[&str], &str); 4] = [
    (&["message", "msg"], "message"),
    (&["type", "kind", "name"], "type"),
    (&["code"], "code"),
    (&["stack", "stack_trace", "stacktrace"], "stack_trace"),
];

/// `_applog._error_from` (`rest` no longer holds `key`).
fn error_from(value: J, error: &mut Vec<(&'static str, String)>, rest: &mut Vec<(String, J)>, key: &str) {
    if let Some(text) = as_text(&value) {
        if has(error, "message") {
            rest.push((key.to_owned(), value));
        } else {
            error.push(("message", text));
        }
        return;
    }
    let J::Obj(mut left) = value else {
        rest.push((key.to_owned(), value));
        return;
    };
    for (names, field) in ERROR_FIELDS {
        for name in names {
            if let Some(i) = position(&left, name) {
                if !has(error, field) {
                    if let Some(text) = as_text(&left[i].1) {
                        error.push((field, text));
                        left.remove(i);
                        break;
                    }
                }
            }
        }
    }
    if !left.is_empty() {
        rest.push((key.to_owned(), J::Obj(left)));
    }
}

/// `_applog.within_limits`.
fn within_limits(value: &J, depth: usize) -> bool {
    match value {
        J::Str(s) => s.chars().count() <= MAX_TEXT,
        J::Obj(pairs) => {
            depth < MAX_DEPTH
                && pairs.iter().all(|(k, v)| k.chars().count() <= MAX_TEXT && within_limits(v, depth + 1))
        }
        J::Arr(items) => depth < MAX_DEPTH && items.iter().all(|v| within_limits(v, depth + 1)),
        _ => true,
    }
}

/// `_applog.parse` of a line (valid UTF-8, its trailing newline gone).
pub fn parse(line: &str) -> Outcome {
    let Ok(value) = serde_json::from_str::<J>(line) else {
        return Outcome::Unsure;
    };
    let J::Obj(mut rest) = value else {
        return Outcome::Text;
    };
    let check = line.chars().count() > MAX_TEXT
        || line.bytes().filter(|b| *b == b'{' || *b == b'[').count() > MAX_DEPTH;
    let mut message = None;
    for key in ["msg", "message"] {
        if let Some(i) = position(&rest, key) {
            if let J::Str(_) = rest[i].1 {
                if let (_, J::Str(s)) = rest.remove(i) {
                    message = Some(s);
                }
                break;
            }
        }
    }
    let mut level = None;
    for key in ["level", "severity", "log.level"] {
        if let Some(i) = position(&rest, key) {
            level = level_of(&rest[i].1);
            if level.is_some() {
                rest.remove(i);
                break;
            }
        }
    }
    let mut error = Vec::new();
    for key in ["error", "err"] {
        if let Some(i) = position(&rest, key) {
            let (_, value) = rest.remove(i);
            error_from(value, &mut error, &mut rest, key);
        }
    }
    for key in ["stack", "stack_trace", "stacktrace"] {
        if let Some(i) = position(&rest, key) {
            if !has(&error, "stack_trace") {
                if let Some(text) = as_text(&rest[i].1) {
                    error.push(("stack_trace", text));
                    rest.remove(i);
                }
            }
        }
    }
    if check && !rest.iter().all(|(k, v)| k.chars().count() <= MAX_TEXT && within_limits(v, 1)) {
        return Outcome::Text;
    }
    Outcome::App(App { message, level, error, rest })
}

/// The `error` object of an `App`.
pub fn write_error(out: &mut Vec<u8>, error: &[(&'static str, String)]) {
    write_object(out, error.iter().map(|(k, v)| (*k, v.as_str())), write_str);
}

/// The remaining keys as one object.
pub fn write_rest(out: &mut Vec<u8>, rest: &[(String, J)]) {
    write_object(out, rest.iter().map(|(k, v)| (k.as_str(), v)), write_json);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(v: f64) -> String {
        float_text(v)
    }

    #[test]
    fn floats_read_as_python_writes_them() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e16), "1e+16");
        assert_eq!(float(1e15), "1000000000000000.0");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(0.00001), "1e-05");
        assert_eq!(float(-2.5e-300), "-2.5e-300");
        assert_eq!(float(123.456), "123.456");
        assert_eq!(float(1.8446744073709552e19), "1.8446744073709552e+19");
        let json = |v: f64| {
            let mut out = Vec::new();
            write_float(&mut out, v, false);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(json(1e-5), "0.00001");
        assert_eq!(json(1.5e-6), "1.5e-6");
        assert_eq!(json(1e16), "1e+16");
        assert_eq!(json(1e100), "1e+100");
        assert_eq!(json(100.0), "100.0");
    }
}
