"""Agent outputs: where batches go and who acknowledges them."""

from kloghub.outputs._decode import decoded
from kloghub.outputs._file import FileOutput
from kloghub.outputs._ndjson import DOCUMENT_CODEC, encode, encode_document, rfc3339_ns

__all__ = [
    "DOCUMENT_CODEC",
    "FileOutput",
    "decoded",
    "encode",
    "encode_document",
    "rfc3339_ns",
]
