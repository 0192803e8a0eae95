"""The file-source library: tails files through rotation, truncation and deletion.

It knows files, not Kubernetes, nor lines. Sources plug in :class:`FileSpec` globs and a
:class:`Reader` that takes the bytes read and their offsets. See ``DESIGN.md`` in this
folder for the cases it handles and its limits.
"""

from kloghub.tail._checkpoints import Checkpoint, CheckpointStore, StateUnavailableError
from kloghub.tail._file import TailedFile, fingerprint_matches
from kloghub.tail._spec import NEVER_DISCOVERED, FileSpec
from kloghub.tail._tailer import Reader, Tailer

__all__ = [
    "NEVER_DISCOVERED",
    "Checkpoint",
    "CheckpointStore",
    "FileSpec",
    "Reader",
    "StateUnavailableError",
    "TailedFile",
    "Tailer",
    "fingerprint_matches",
]
