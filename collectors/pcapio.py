"""Read pcap and pcapng captures as numpy batches of packets, never one Python object each.

The file (plain or gzip, a path, ``-`` for stdin, or an open binary stream read strictly
sequentially) is read in chunks of about ``batch_bytes``. A tight Python loop walks the
record headers of a chunk collecting only offsets; timestamps and lengths are then gathered
for all records at once with numpy. The incomplete record at the end of a chunk is carried
over to the next one, so records may straddle chunks and may be larger than a chunk.

A file that cannot be opened or is not a capture raises :class:`CaptureError` /
:class:`CaptureFormatError` from the constructor. Anything broken after a valid file magic
never raises: it is recorded in :attr:`CaptureReader.weirds` and reading stops (or skips
the bad block when the format allows it), after every packet read before has been yielded.

Weird names: ``truncated_file_header``, ``truncated_record`` (file ends inside a record or
block), ``bad_record_length`` (pcap record over 256 KiB or snaplen + 64 KiB: stop; pcapng
packet longer than its block: skipped), ``bad_block_length`` (not a multiple of 4, under
the minimum, over 32 MiB or trailer differs: stop; packet block too short: skipped),
``unknown_interface`` (skipped), ``missing_section_header``, ``bad_section_header``,
``bad_interface_option``, ``truncated_gzip``, ``bad_gzip``, ``read_error``. A packet that is
skipped still takes its frame number, so batches are cut there: frame numbers inside one
batch are always consecutive.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from collectors.pcapng import NS, Emit, Feed, Part, PcapngParser, halves, slide, split_frames
from parkwatch.errors import CaptureError, CaptureFormatError

SLACK = 64  # zero bytes after each chunk's data (see CaptureReader._fill)
MAX_RECORD = 256 << 10  # a pcap record longer than this (or than snaplen + 64 KiB) is corrupt
MAX_WEIRDS_PER_NAME = 1000  # further weirds of the same name are only counted
GZIP_MAGIC = b"\x1f\x8b"
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
PCAPNG_BOMS = (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d")
PCAP_MAGICS = {  # magic -> (byte order, nanoseconds per fraction unit)
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}


@dataclass
class RawBatch:
    """Packets of one chunk: numpy columns of offsets into ``buf``, no per-packet objects.

    Packet i is ``buf[data_off[i] : data_off[i] + caplen[i]]``; its frame number (1-based,
    as Wireshark counts) is ``first_frame + i``. A batch is never empty; ``buf`` is a
    read-only view of the chunk, shared by the batches of that chunk (no packet is copied).
    """

    buf: bytes | memoryview
    data_off: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    ts_ns: np.ndarray
    linktype: np.ndarray
    first_frame: int

    def __len__(self) -> int:
        return len(self.data_off)


@dataclass
class CaptureWeird:
    """A structural problem of the capture file (not of a packet's content).

    ``frame`` is the number of the frame being read when it happened (1 + frames before).
    """

    frame: int
    name: str
    detail: str


class _PcapParser:
    """Incremental classic-pcap parser with the same ``feed`` contract as PcapngParser."""

    def __init__(self, weird: Emit) -> None:
        self._weird = weird
        self.frames = 0
        self._order = "<"
        self._mult = 1000
        self._linktype = 0
        self._limit = MAX_RECORD
        self._started = False

    def feed(self, buf: Any, eof: bool) -> Feed:
        """Parse every complete record of ``buf``: ``(parts, consumed, need, stop)``."""
        n, pos = len(buf), 0
        parts: list[Part] = []
        if not self._started:
            if n < 24:
                if eof:
                    self._weird(1, "truncated_file_header", f"{n} of 24 header bytes")
                    return parts, n, 0, True
                return parts, 0, 24, False
            self._order, self._mult = PCAP_MAGICS[bytes(buf[:4])]
            snaplen, linktype = struct.unpack_from(self._order + "II", buf, 16)
            self._linktype = linktype & 0xFFFF  # as libpcap LT_LINKTYPE: drop FCS info bits
            self._limit = min(MAX_RECORD, snaplen + (64 << 10)) if snaplen else MAX_RECORD
            self._started, pos = True, 24
        offs, o = _walk(buf, pos, self._order)
        b = np.array(offs, np.int64)
        stop = False
        if len(b):
            s64 = slide(buf, self._order, 8)
            first, second = halves(s64[b], self._order)
            cl, wl = halves(s64[b + 8], self._order)
            bad = cl > self._limit
            if bad.any():
                k = int(np.argmax(bad))
                self._weird(self.frames + k + 1, "bad_record_length", f"captured length {cl[k]}")
                b, first, second, cl, wl = b[:k], first[:k], second[:k], cl[:k], wl[:k]
                stop = True
            ts = first  # in place: no temporaries on the hot path
            ts *= NS
            second *= self._mult
            ts += second
            lt = np.full(len(b), self._linktype, np.int64)
            parts = split_frames(b + 16, cl, wl, ts, lt, b[:0], self.frames + 1)
            self.frames += len(b)
        if stop:
            return parts, n, 0, True
        need = 16
        if n - o >= 16:
            cl0 = struct.unpack_from(self._order + "I", buf, o + 8)[0]
            if cl0 > self._limit:
                self._weird(self.frames + 1, "bad_record_length", f"captured length {cl0}")
                return parts, n, 0, True
            need += cl0
        if eof and o < n:
            self._weird(self.frames + 1, "truncated_record", f"file ends {n - o} bytes into it")
            return parts, n, 0, True
        return parts, o, need, False


def _walk(buf: Any, o: int, order: str) -> tuple[list[int], int]:
    """Offsets of the complete records from o on, and the offset where the walk stopped.

    This is the hot loop: one ``unpack_from`` and one append per record. Absurd lengths
    are checked afterwards with numpy (a bogus record ends the useful part anyway).
    """
    offs: list[int] = []
    append = offs.append
    unpack = struct.Struct(order + "8xI").unpack_from
    n = len(buf)
    try:
        while True:
            (cl,) = unpack(buf, o)
            e = o + 16 + cl
            if e > n:
                break
            append(o)
            o = e
    except struct.error:
        pass
    return offs, o


class _PlainStream:
    """Sequential reader of an uncompressed binary stream; never seeks."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._readinto = getattr(f, "readinto", None)
        self.error: tuple[str, str] | None = None
        self.consumed = 0  # bytes taken from the underlying file (for progress)

    def read_into(self, mv: memoryview) -> int:
        """Fill mv; fewer bytes than its length only at end of file (or on a read error)."""
        got, want = 0, len(mv)
        try:
            while got < want:
                if self._readinto is not None:
                    k = self._readinto(mv[got:]) or 0
                else:
                    data = self._f.read(want - got)
                    k = len(data)
                    mv[got : got + k] = data
                if not k:
                    break
                got += k
        except OSError as e:
            self.error = ("read_error", str(e))
        self.consumed += got
        return got


class _GzipStream:
    """Streaming gunzip (multi-member) that keeps every byte decoded before a corruption."""

    def __init__(self, f: BinaryIO, prefix: bytes) -> None:
        self._f = f
        self._pending = prefix
        self._d = zlib.decompressobj(31)
        self._fed = False
        self._eof = False
        self.error: tuple[str, str] | None = None
        self.consumed = len(prefix)  # compressed bytes taken from the file (for progress)

    def read_into(self, mv: memoryview) -> int:
        """Fill mv with decompressed bytes; fewer than its length only at the end."""
        got, want = 0, len(mv)
        while got < want and not self._eof:
            data = self._d.unconsumed_tail or self._pending
            self._pending = b""
            if not data:
                try:
                    data = self._f.read(1 << 20)
                    self.consumed += len(data)
                except OSError as e:
                    self.error, data = ("read_error", str(e)), b""
            if not data or (not self._fed and data[0] == 0):  # the end, or zero padding
                if self._fed and self.error is None:
                    self.error = ("truncated_gzip", "compressed stream ends early")
                self._eof = True
                break
            try:
                out = self._d.decompress(data, want - got)
            except zlib.error as e:
                self.error, self._eof = ("bad_gzip", str(e)), True
                break
            self._fed = True
            mv[got : got + len(out)] = out
            got += len(out)
            if self._d.eof:  # next gzip member, if any
                self._pending = self._d.unused_data
                self._d, self._fed = zlib.decompressobj(31), False
        return got


class CaptureReader:
    """Read a pcap/pcapng capture (plain or gzip, file, ``-`` for stdin, or a stream).

    Attributes: ``name`` (path, ``<stdin>`` or the stream's name), ``fmt`` (``pcap`` or
    ``pcapng``), ``weirds`` (at most MAX_WEIRDS_PER_NAME of each name are kept),
    ``weird_counts`` (every weird, by name) and ``packets`` (packets yielded so far).
    A stream passed in is read sequentially (never seeked) and is not closed.

    Usage::

        with CaptureReader("trace.pcapng.gz") as cap:
            for batch in cap.batches():
                ...
    """

    def __init__(self, source: str | os.PathLike[str] | BinaryIO, *, batch_bytes: int = 16 << 20):
        self.weirds: list[CaptureWeird] = []
        self.weird_counts: dict[str, int] = {}
        self.packets = 0
        self._batch_bytes = max(int(batch_bytes), 64)
        self._own: BinaryIO | None = None
        self._done = False
        self._need = 0
        f: BinaryIO
        if isinstance(source, str | os.PathLike):
            path = os.fsdecode(source)
            if path == "-":
                self.name, f = "<stdin>", sys.stdin.buffer
            else:
                self.name = path
                try:
                    f = open(path, "rb")  # noqa: SIM115 - closed by close()
                except OSError as e:
                    raise CaptureError(f"cannot open capture: {e.strerror or e}", file=path) from e
                self._own = f
        else:
            f = source
            name = getattr(source, "name", None)
            self.name = name if isinstance(name, str) else "<stream>"
        try:
            self._open(f)
        except BaseException:
            self.close()
            raise

    def _open(self, f: BinaryIO) -> None:
        """Detect gzip and the capture format from the first bytes; keep them as carry."""
        plain = _PlainStream(f)
        self._stream: _PlainStream | _GzipStream = plain
        head = self._read_head(plain)
        if head[:2] == GZIP_MAGIC:
            self._stream = _GzipStream(f, head)
            head = self._read_head(self._stream, "gzip ")
        magic = head[:4]
        if magic in PCAP_MAGICS:
            self.fmt = "pcap"
            self._parser: _PcapParser | PcapngParser = _PcapParser(self._emit)
        elif magic == PCAPNG_MAGIC:
            if len(head) >= 12 and head[8:12] not in PCAPNG_BOMS:
                raise CaptureFormatError(
                    f"pcapng section header has a bad byte-order magic {head[8:12].hex()}",
                    file=self.name,
                )
            self.fmt = "pcapng"
            self._parser = PcapngParser(self._emit)
        else:
            kuz = magic in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34")
            what = ": modified (Kuznetzov) pcap is not supported" if kuz else ""
            raise CaptureFormatError(
                f"not a pcap or pcapng file (starts with {magic.hex()}{what})", file=self.name
            )
        self._carry = head

    def _read_head(self, stream: _PlainStream | _GzipStream, what: str = "") -> bytes:
        buf = bytearray(12)
        k = stream.read_into(memoryview(buf))
        if stream.error and k < 4:
            kind, detail = stream.error
            err = CaptureError if kind == "read_error" else CaptureFormatError
            raise err(f"cannot read {what}capture: {detail}", file=self.name)
        if k == 0:
            raise CaptureFormatError(f"empty {what}file", file=self.name)
        if k < 4:
            raise CaptureFormatError(f"{what}file too short ({k} bytes)", file=self.name)
        return bytes(buf[:k])

    def _emit(self, frame: int, name: str, detail: str) -> None:
        count = self.weird_counts.get(name, 0) + 1
        self.weird_counts[name] = count
        if count <= MAX_WEIRDS_PER_NAME:
            self.weirds.append(CaptureWeird(frame, name, detail))

    def _fill(self) -> tuple[bytearray, int, bool]:
        """New chunk: the carried tail followed by up to about batch_bytes fresh bytes.

        Returns the buffer, the number of data bytes in it and whether the input ended. The
        buffer has SLACK zero bytes after the data so the decoder can gather fixed-width
        headers at any packet offset without a bounds special case.
        """
        carry = self._carry
        want = max(self._batch_bytes, self._need - len(carry))
        buf = bytearray(len(carry) + want + SLACK)
        buf[: len(carry)] = carry
        got = self._stream.read_into(memoryview(buf)[len(carry) : len(carry) + want])
        size = len(carry) + got
        if got < want:
            del buf[size + SLACK :]
        return buf, size, got < want or self._stream.error is not None

    def batches(self) -> Iterator[RawBatch]:
        """Yield the packets as :class:`RawBatch` es, chunk by chunk, until the end."""
        while not self._done:
            buf, size, eof = self._fill()
            parts, used, self._need, stop = self._parser.feed(memoryview(buf)[:size], eof)
            if self._stream.error:
                self._emit(self._parser.frames + 1, *self._stream.error)
                self._stream.error = None
            self._carry = bytes(buf[used:size])
            if stop or eof:
                self.close()
            view = memoryview(buf).toreadonly()
            for part in parts:
                self.packets += len(part[0])
                yield _batch(view, part)

    @property
    def consumed(self) -> int:
        """Bytes of the file read so far (compressed bytes for gzip), for progress bars."""
        return self._stream.consumed

    def close(self) -> None:
        """Stop reading and close the file if this reader opened it."""
        self._done = True
        if self._own is not None:
            self._own.close()
            self._own = None

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _batch(view: memoryview, part: Part) -> RawBatch:
    off, cl, wl, ts, lt, first = part
    return RawBatch(view, off, cl, wl, ts, lt, first)
