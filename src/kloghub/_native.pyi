"""Type stubs of the compiled kernels (native/, built by maturin)."""

from collections.abc import Callable

KERNELS_VERSION: str

def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int: ...

_Produced = tuple[bytes, int, int, int, int, int, int, int]

class FileEncoder:
    def __init__(
        self,
        fmt: str,
        max_line_bytes: int,
        max_record_bytes: int,
        flush_timeout_ns: int,
        record_head: int,
        kubernetes: bytes,
        file: bytes,
        tail: bytes,
        kloghub_size: int,
        offset: int,
        parse_docker: Callable[[bytes], tuple[int | None, str, str, bool] | None],
        load_json: Callable[[bytes], tuple[int | None, bool] | None],
    ) -> None: ...
    def set_context(
        self, record_head: int, kubernetes: bytes, file: bytes, tail: bytes, kloghub_size: int
    ) -> None: ...
    def feed(self, data: bytes, now_ns: int) -> _Produced: ...
    def flush(self, now_ns: int, force: bool = False) -> _Produced: ...
    def safe_offset(self) -> int: ...
    @property
    def read_offset(self) -> int: ...
    @property
    def format(self) -> str: ...

_Template = tuple[bytes, bytes, list[bytes], list[int], bytes | None]

class BulkDocuments:
    def __init__(
        self, parse_json: bool, make_template: Callable[[str, bytes], _Template | None]
    ) -> None: ...
    def encode(
        self, tag: str, data: bytes, start: int, max_bytes: int, ingested: bytes, scope: bytes
    ) -> tuple[bytes, int, int, list[tuple[int, int]]]: ...
    @staticmethod
    def whole(data: bytes) -> bool: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...

def take_wire_frames(
    buf: bytes,
    pos: int,
    room: int,
    nbytes: int,
    max_bytes: int,
    has_events: bool,
    finalizer: object,
    event: type,
    encoded: type,
) -> tuple[list[object], int, int]: ...
