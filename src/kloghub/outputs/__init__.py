"""Agent outputs: where batches go and who acknowledges them."""

from kloghub.outputs._decode import decoded
from kloghub.outputs._file import FileOutput
from kloghub.outputs._ndjson import encode, rfc3339_ns

__all__ = ["FileOutput", "decoded", "encode", "rfc3339_ns"]
