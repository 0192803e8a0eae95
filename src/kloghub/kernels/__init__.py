"""Per-chunk kernels of the data plane: a tailed file's bytes → wire-ready entries.

One :class:`FileEncoder` per tailed file takes the bytes read from it and returns
:class:`Encoded` entries — ``[EventTime, record]`` msgpack arrays as a Forward
``PackedForward`` body carries them (``kernels._entries`` has the byte-exact layout).
:class:`EntryContext` holds what is constant for a file (its path, id, pod metadata),
encoded once.

Two implementations give byte-identical output for any input and any split of it into
feeds: the compiled one (``kloghub._native``, Rust) and the Python reference
(``kernels._reference``), which is the executable specification. The compiled one is used
when built and when it covers the file's configuration (not multiline rules yet), unless
``KLOGHUB_KERNELS=python``; :func:`native_available` tells whether it is built and
allowed, ``FileEncoder.native`` which one a file got (``kernels._select``).

The collector's request kernel (:func:`bulk_documents_class`: PackedForward entries →
sink-queue frames) is used by ``collector._fastpath``, which holds its specification.
"""

from kloghub.kernels._compiled import CompiledFileEncoder, bulk_documents_class
from kloghub.kernels._encoded import Encoded
from kloghub.kernels._entries import EntryContext, decode_entries, encode_records
from kloghub.kernels._reference import ReferenceFileEncoder
from kloghub.kernels._select import FileEncoder, native_available

__all__ = [
    "CompiledFileEncoder",
    "Encoded",
    "EntryContext",
    "FileEncoder",
    "ReferenceFileEncoder",
    "bulk_documents_class",
    "decode_entries",
    "encode_records",
    "native_available",
]
