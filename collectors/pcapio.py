"""Read pcap and pcapng captures as numpy batches of packets, never one Python object each.

The file (plain or gzip, a path, ``-`` for stdin, or an open binary stream read strictly
sequentially) is read in chunks of about ``batch_bytes``. A regular uncompressed file given
by path can be memory-mapped instead (``use_mmap=True``, off by default) so its chunks are
windows of the mapping, not copies: a little faster, but a file truncated by another process
while it is being read then kills the process with SIGBUS instead of giving a counted
``truncated_record``, so the default path copies (the mapping lives as long as the reader or
any batch viewing it). A tight Python
loop walks the record headers of a chunk collecting only offsets; timestamps and lengths
are then gathered for all records at once with numpy. The incomplete record at the end of
a chunk is carried over to the next one, so records may straddle chunks and may be larger
than a chunk.

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

import io
import mmap
import os
import stat
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from collectors.pcapng import (
    NATIVE,
    NS,
    Emit,
    Feed,
    Part,
    PcapngParser,
    halves,
    slide,
    split_frames,
    u32_views,
)
from parkwatch.errors import CaptureError, CaptureFormatError

SLACK = 64  # bytes readable after each chunk's data (see CaptureReader._fill)
MAP_TAIL = 1 << 20  # the last window of a mapped file is cut so that at most this is copied
_DONTNEED: int | None = getattr(mmap, "MADV_DONTNEED", None)
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
        b = np.fromiter(offs, np.int64, len(offs))  # offsets of the length fields: record + 8
        stop = False
        if len(b):
            s64 = slide(buf, self._order, 8)
            cl, wl = halves(s64[b], self._order)
            b -= 8
            first, second = halves(s64[b], self._order)
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
    """Offsets of the captured-length fields (record offset + 8) of the complete records
    from o on, and the offset where the walk stopped.

    This is the hot loop: two subscripts, an add and an append per record, no call.
    Absurd lengths are checked afterwards with numpy (a bogus record ends the useful part
    anyway).
    """
    offs: list[int] = []
    append = offs.append
    p = o + 8
    if order == NATIVE:
        views = u32_views(buf)
        try:
            while True:
                append(p)
                p += views[p & 3][p >> 2] + 16
        except IndexError:
            pass
    else:
        unpack = struct.Struct(order + "I").unpack_from
        try:
            while True:
                append(p)
                p += unpack(buf, p)[0] + 16
        except struct.error:
            pass
    p = offs.pop()  # its length field is past the end
    if p - 8 > len(buf):  # the record before ends past the end
        p = offs.pop()
    return offs, p - 8


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


class _MappedFile:
    """A regular file mapped read-only in memory, read by :meth:`CaptureReader._mapped`."""

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm: mmap.mmap | None = mm
        self.size = len(mm)
        self.head = mm[:12]
        self.error: tuple[str, str] | None = None  # mapped files report no read errors
        self.consumed = 0  # bytes of the file handed to the parser (for progress)

    @staticmethod
    def open(f: BinaryIO) -> _MappedFile | None:
        """Map f if it is a regular file of at least 4 bytes that can be mapped."""
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size < 4 or f.tell() != 0:
                return None
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError, io.UnsupportedOperation):
            return None
        return _MappedFile(mm)


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

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        batch_bytes: int = 16 << 20,
        use_mmap: bool = False,
    ):
        self._use_mmap = use_mmap
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
        """Detect gzip and the capture format from the first bytes; keep them as carry.

        With ``use_mmap``, a regular file this reader opened itself is mapped (unless it is
        gzip) and read without copies; everything else is read in chunks.
        """
        plain = _PlainStream(f)
        self._stream: _PlainStream | _GzipStream | _MappedFile = plain
        mapped = _MappedFile.open(f) if self._use_mmap and f is self._own else None
        if mapped is not None and mapped.head[:2] != GZIP_MAGIC:
            self._stream = mapped
            head = mapped.head
        else:
            del mapped  # an mmap is only ever released, never closed
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
        self._carry: bytes | memoryview = head

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

    def _fill(self) -> tuple[memoryview, int, bool]:
        """New chunk: the carried tail followed by up to about batch_bytes fresh bytes.

        Returns the buffer, the number of data bytes in it and whether the input ended. The
        buffer has SLACK zero bytes after the data so the decoder can gather fixed-width
        headers at any packet offset without a bounds special case. It is not zero-filled
        first (np.empty): only the slack is.
        """
        carry = self._carry
        k = len(carry)
        want = max(self._batch_bytes, self._need - k)
        arr = np.empty(k + want + SLACK, np.uint8)
        buf = arr.data
        buf[:k] = carry
        stream = self._stream
        assert not isinstance(stream, _MappedFile)
        got = stream.read_into(buf[k : k + want])
        size = k + got
        arr[size : size + SLACK] = 0
        return buf[: size + SLACK], size, got < want or self._stream.error is not None

    def batches(self) -> Iterator[RawBatch]:
        """Yield the packets as :class:`RawBatch` es, chunk by chunk, until the end."""
        if isinstance(self._stream, _MappedFile):
            yield from self._mapped(self._stream)
            return
        while not self._done:
            buf, size, eof = self._fill()
            parts, used, self._need, stop = self._parser.feed(buf[:size], eof)
            if self._stream.error:
                self._emit(self._parser.frames + 1, *self._stream.error)
                self._stream.error = None
            self._carry = buf[used:size]  # copied into the next chunk
            if stop or eof:
                self.close()
            view = buf.toreadonly()
            for part in parts:
                self.packets += len(part[0])
                yield _batch(view, part)

    def _mapped(self, src: _MappedFile) -> Iterator[RawBatch]:
        """Zero-copy :meth:`batches` of a mapped file: each chunk is a window of the mapping.

        The windows end where :meth:`_fill` would end its chunks and extend SLACK bytes past
        their data (the bytes that follow in the file); only the end of the file (at most
        about MAP_TAIL bytes) is copied into a buffer with zero slack. The pages behind the
        current window are dropped from the resident set as reading goes on (see _release).
        The mapping is never closed here: the batches' views keep it alive while they live.
        """
        mm = src.mm
        if mm is None:  # closed already
            return
        view, size = memoryview(mm).toreadonly(), src.size
        pos, filled = 0, len(self._carry)  # the head was "read" already, as in _fill
        released = 0
        while not self._done:
            released = _release(mm, released, pos)
            end = min(size, filled + max(self._batch_bytes, self._need - (filled - pos)))
            if size - SLACK < end and size - SLACK > max(filled, pos + MAP_TAIL):
                end = size - SLACK  # copy only a short tail at the end of the file
            filled = src.consumed = end
            eof = end == size
            if end + SLACK <= size:
                buf = view[pos : end + SLACK]
            else:
                arr = np.empty(end - pos + SLACK, np.uint8)
                arr[: end - pos] = view[pos:end]
                arr[end - pos :] = 0
                buf = arr.data.toreadonly()
            parts, used, self._need, stop = self._parser.feed(buf[: end - pos], eof)
            pos += used
            if stop or eof:
                self.close()
            for part in parts:
                self.packets += len(part[0])
                yield _batch(buf, part)
        _release(mm, released, size)

    @property
    def consumed(self) -> int:
        """Bytes of the file read so far (compressed bytes for gzip), for progress bars."""
        return self._stream.consumed

    def close(self) -> None:
        """Stop reading and close the file if this reader opened it."""
        self._done = True
        if isinstance(self._stream, _MappedFile):
            self._stream.mm = None  # released with the last batch still viewing it
        if self._own is not None:
            self._own.close()
            self._own = None

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _release(mm: mmap.mmap, start: int, end: int) -> int:
    """Drop the pages of ``mm`` in [start, end) (start page aligned) from the resident set
    (MADV_DONTNEED, the range stays mapped); return the new start.

    Without this the pages of a mapped file stay in the process's resident set until the
    mapping goes, so a capture would count in full in the peak RSS. A shared file mapping
    stays valid: a batch still viewing released pages faults them in again from the page
    cache.
    """
    end -= end % mmap.PAGESIZE
    if end > start and _DONTNEED is not None:
        try:
            mm.madvise(_DONTNEED, start, end - start)
        except OSError:
            return end
    return max(start, end)


def _batch(view: memoryview, part: Part) -> RawBatch:
    off, cl, wl, ts, lt, first = part
    return RawBatch(view, off, cl, wl, ts, lt, first)
