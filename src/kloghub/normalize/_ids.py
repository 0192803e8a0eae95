"""Deterministic document ids: a resent event overwrites nothing and is never indexed twice.

- **kloghub records** (a ``kloghub`` block with ``file_id`` and ``offset``): the id is
  ``<file><offset>[.<stage>]``: 12 base64url characters of a hash of the file's identity
  (the agent's ``file_id``, stable across renames and restarts), the end offset of the
  record in that file as 12 or more hex digits, and for audit events the stage. Ids of one
  file share their prefix and grow with the offset, which keeps Lucene's id lookups cheap.
- **other records** (Fluent Bit, Fluentd, fluent-logger: no ``kloghub`` block): ``f`` and
  20 base64url characters of a hash of ``(tag, time_ns, stage, log)`` — or of the whole
  record, key-sorted, when it has no ``log``. Two identical lines written by one container
  in the same nanosecond therefore become one document; runtimes stamp lines in
  nanoseconds, so this is rare, and it is the price of deduplicating resent chunks from
  agents that carry no offsets.

Ids of records received over the network are **scoped by the sender's proven identity**
(``core.Origin.namespace``): the namespace is hashed in with the file identity (or the
content), so a peer that copies another node's ``file_id`` and next offset writes a
document with a different id and cannot pre-empt (and so suppress) the real line. Records
read locally (the agent's own store, no origin) have unscoped ids.

Audit events are deliberately **not** identified by their ``auditID``: a client can choose
the ``Audit-ID`` of its requests, and a create with a reused id would be acknowledged as
"already there" and silently dropped — the way to hide an action from the SIEM. The
``auditID`` stays searchable in ``kubernetes.audit.auditID``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["document_id", "offset_id"]

_STAGES = {
    "RequestReceived": ".q",
    "ResponseStarted": ".s",
    "ResponseComplete": ".c",
    "Panic": ".p",
}
_FILE_PREFIXES: dict[str, str] = {}
_FILE_PREFIXES_MAX = 65536


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _file_prefix(file_id: str) -> str:
    prefix = _FILE_PREFIXES.get(file_id)
    if prefix is None:
        digest = hashlib.blake2b(file_id.encode("utf-8", "surrogatepass"), digest_size=9)
        prefix = _b64(digest.digest())
        if len(_FILE_PREFIXES) >= _FILE_PREFIXES_MAX:
            _FILE_PREFIXES.clear()
        _FILE_PREFIXES[file_id] = prefix
    return prefix


def _stage_suffix(stage: str | None) -> str:
    if not stage:
        return ""
    known = _STAGES.get(stage)
    if known is not None:
        return known
    digest = hashlib.blake2b(stage.encode("utf-8", "surrogatepass"), digest_size=6)
    return "." + _b64(digest.digest())


def _content(record: Mapping[str, Any]) -> bytes:
    log = record.get("log")
    if type(log) is str:
        return log.encode("utf-8", "surrogatepass")
    if type(log) is bytes:
        return log
    try:
        return orjson.dumps(
            record, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr
        )
    except (TypeError, orjson.JSONEncodeError):
        return repr(sorted(record.items(), key=repr)).encode("utf-8", "surrogatepass")


def offset_id(file_id: str, offset: int, stage: str | None = None, scope: str = "") -> str:
    """The id of a kloghub record (``file_id`` non-empty, ``offset`` ≥ 0); ``scope``: the
    sender's id namespace (empty for local records)."""
    key = f"{scope}\x00{file_id}" if scope else file_id
    return f"{_file_prefix(key)}{offset:012x}{_stage_suffix(stage) if stage else ''}"


def document_id(
    tag: str,
    time_ns: int,
    record: Mapping[str, Any],
    stage: str | None = None,
    scope: str = "",
) -> str:
    """The document ``_id`` of an input event (``stage``: an audit event's stage;
    ``scope``: the sender's id namespace)."""
    kh = record.get("kloghub")
    if type(kh) is dict:
        file_id = kh.get("file_id")
        offset = kh.get("offset")
        if type(file_id) is str and file_id and type(offset) is int and offset >= 0:
            return offset_id(file_id, offset, stage, scope)
    prefix = f"{scope}\x00" if scope else ""
    head = f"{prefix}{tag}\x00{time_ns}\x00{stage or ''}\x00".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(head, digest_size=15)
    digest.update(_content(record))
    return "f" + _b64(digest.digest())
