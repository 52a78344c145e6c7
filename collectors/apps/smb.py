"""SMB2/3 (MS-SMB2) and SMB1 (MS-CIFS) over NetBIOS session framing (TCP 445 and 139).

One event per SMB message; compounded messages (NextCommand chaining) give one event each.
``function_code`` = SMB2 Command (``FUNCTIONS``: 0 negotiate … 19), SMB1 commands as
``0x100 | command`` ('smb1_negotiate' = 0x172) with ``attrs['smb1']``; ``direction`` from the
SMB2_FLAGS_SERVER_TO_REDIR (SMB1: FLAGS_REPLY) bit; ``match`` = MessageId (SMB1: MID).
``exception_code`` = the NTSTATUS of a response whose severity is *error* (0xC…) except
STATUS_MORE_PROCESSING_REQUIRED, which is an ordinary step of a multi-leg logon; success,
informational (STATUS_PENDING) and warning statuses (STATUS_BUFFER_OVERFLOW,
STATUS_NO_MORE_FILES, which end normal pipe reads and listings) are only in ``attrs['status']``.
Interim async responses (STATUS_PENDING), CANCEL and server oplock breaks answer nothing.

Per connection the decoder remembers tree ids (share paths), file ids (names) and pending
requests, so READ/WRITE/IOCTL/CLOSE events carry the ``filename`` and ``share`` they act on.
Session setup: the NTLMSSP AUTHENTICATE user, domain and workstation; the response's
``login`` 'success' / 'failure'. Encrypted (0xFD transform) and compressed (0xFC) messages
are events 'encrypted' / 'compressed'. Messages over ``BIG`` octets are decoded from their
first ``BIG`` octets and the rest skipped (never buffered); their events come at their end.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

FUNCTIONS: dict[int, str] = {
    0: "negotiate", 1: "session_setup", 2: "logoff", 3: "tree_connect", 4: "tree_disconnect",
    5: "create", 6: "close", 7: "flush", 8: "read", 9: "write", 10: "lock", 11: "ioctl",
    12: "cancel", 13: "echo", 14: "query_directory", 15: "change_notify", 16: "query_info",
    17: "set_info", 18: "oplock_break", 19: "server_to_client_notification",
}  # fmt: skip
SMB1: dict[int, str] = {
    0x00: "create_directory", 0x01: "delete_directory", 0x02: "open", 0x03: "create",
    0x04: "close", 0x05: "flush", 0x06: "delete", 0x07: "rename", 0x08: "query_information",
    0x09: "set_information", 0x0A: "read", 0x0B: "write", 0x0C: "lock_byte_range",
    0x0D: "unlock_byte_range", 0x0E: "create_temporary", 0x0F: "create_new",
    0x10: "check_directory", 0x11: "process_exit", 0x12: "seek", 0x13: "lock_and_read",
    0x14: "write_and_unlock", 0x1A: "read_raw", 0x1D: "write_raw", 0x22: "set_information2",
    0x23: "query_information2", 0x24: "locking_andx", 0x25: "transaction",
    0x26: "transaction_secondary", 0x27: "ioctl", 0x2B: "echo", 0x2D: "open_andx",
    0x2E: "read_andx", 0x2F: "write_andx", 0x32: "transaction2", 0x33: "transaction2_secondary",
    0x34: "find_close2", 0x70: "tree_connect", 0x71: "tree_disconnect", 0x72: "negotiate",
    0x73: "session_setup_andx", 0x74: "logoff_andx", 0x75: "tree_connect_andx",
    0xA0: "nt_transact", 0xA1: "nt_transact_secondary", 0xA2: "nt_create_andx",
    0xA4: "nt_cancel", 0xA5: "nt_rename",
}  # fmt: skip
FUNCTIONS.update({0x100 | k: f"smb1_{v}" for k, v in SMB1.items()})
STATUS: dict[int, str] = {
    0: "SUCCESS", 0x103: "PENDING", 0x10B: "NOTIFY_CLEANUP", 0x10C: "NOTIFY_ENUM_DIR",
    0x80000005: "BUFFER_OVERFLOW", 0x80000006: "NO_MORE_FILES", 0xC0000008: "INVALID_HANDLE",
    0xC000000D: "INVALID_PARAMETER", 0xC0000010: "INVALID_DEVICE_REQUEST",
    0xC0000011: "END_OF_FILE", 0xC0000016: "MORE_PROCESSING_REQUIRED",
    0xC0000022: "ACCESS_DENIED", 0xC0000033: "OBJECT_NAME_INVALID",
    0xC0000034: "OBJECT_NAME_NOT_FOUND", 0xC0000035: "OBJECT_NAME_COLLISION",
    0xC000003A: "OBJECT_PATH_NOT_FOUND", 0xC0000043: "SHARING_VIOLATION",
    0xC0000064: "NO_SUCH_USER", 0xC000006A: "WRONG_PASSWORD", 0xC000006D: "LOGON_FAILURE",
    0xC000006E: "ACCOUNT_RESTRICTION", 0xC0000071: "PASSWORD_EXPIRED",
    0xC0000072: "ACCOUNT_DISABLED", 0xC00000BB: "NOT_SUPPORTED", 0xC00000BA: "FILE_IS_A_DIRECTORY",
    0xC00000C9: "NETWORK_NAME_DELETED", 0xC00000CC: "BAD_NETWORK_NAME", 0xC0000120: "CANCELLED",
    0xC0000203: "USER_SESSION_DELETED", 0xC0000224: "PASSWORD_MUST_CHANGE",
    0xC0000225: "NOT_FOUND", 0xC0000234: "ACCOUNT_LOCKED_OUT",
}  # fmt: skip
DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x02FF: "2.???", 0x0300: "3.0", 0x0302: "3.0.2",
            0x0311: "3.1.1"}  # fmt: skip
SHARE_TYPES = {1: "disk", 2: "pipe", 3: "print"}
DISPOSITIONS = ["supersede", "open", "create", "open_if", "overwrite", "overwrite_if"]
MORE_PROCESSING, PENDING = 0xC0000016, 0x103
BIG = 64 * 1024
MAX_MSG = 16 * 1024 * 1024
MAX_STATE = 4096
_HDR = struct.Struct("<4sHHIHHIIQ")  # protocol .. message id (32 octets)
_KRB = (bytes.fromhex("2a864886f712010202"), bytes.fromhex("2a864882f712010202"))


def _u16(b: bytes, p: int) -> int:
    return int.from_bytes(b[p : p + 2], "little") if p + 2 <= len(b) else _short(p)


def _u32(b: bytes, p: int) -> int:
    return int.from_bytes(b[p : p + 4], "little") if p + 4 <= len(b) else _short(p)


def _short(p: int) -> int:
    raise DecodeError("truncated_body", f"field at {p} past the message")


def _utf16(b: bytes, p: int, n: int) -> str:
    return b[p : p + min(n, 1024)].decode("utf-16-le", "replace").rstrip("\0")


def ntlm_auth(blob: bytes, attrs: dict[str, Any]) -> None:
    """User, domain and workstation of an NTLMSSP AUTHENTICATE message in ``blob``."""
    k = blob.find(b"NTLMSSP\0")
    if k < 0:
        if any(oid in blob for oid in _KRB):
            attrs["auth_mech"] = "kerberos"
        return
    attrs["auth_mech"] = "ntlm"
    m = blob[k:]
    if len(m) < 64 or _u32(m, 8) != 3:
        return
    unicode = bool(_u32(m, 60) & 1)
    for key, at in (("domain", 28), ("user", 36), ("workstation", 44)):
        ln, off = _u16(m, at), _u32(m, at + 4)
        raw = m[off : off + min(ln, 512)]
        attrs[key] = raw.decode("utf-16-le", "replace") if unicode else raw.decode("latin-1")
    if not attrs.get("user") and _u16(m, 20) == 0:
        attrs["anonymous"] = True


class _Side:
    __slots__ = ("pending", "skip")

    def __init__(self) -> None:
        self.skip = 0
        self.pending: list[Msg] = []


@register
class Smb(AppDecoder):
    name = "smb"
    tcp_ports = (445, 139)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "status": "Response NTSTATUS (int).",
        "status_name": "Name of a well-known NTSTATUS ('LOGON_FAILURE', 'ACCESS_DENIED' …).",
        "session_id": "SMB2 SessionId (SMB1: UID).",
        "tree_id": "SMB2 TreeId of a sync message (SMB1: TID).",
        "dialects": "NEGOTIATE request: dialects offered ('2.1', '3.1.1'; SMB1: strings).",
        "dialect": "NEGOTIATE response: dialect chosen ('3.0.2'; '0x….' when unknown).",
        "dialect_index": "SMB1 NEGOTIATE response: index of the dialect chosen.",
        "signing_required": "NEGOTIATE: SecurityMode has SIGNING_REQUIRED.",
        "auth_mech": "SESSION_SETUP request: 'ntlm' or 'kerberos' (from the security blob).",
        "user": "SESSION_SETUP: NTLM user name (request; copied onto the response).",
        "domain": "SESSION_SETUP request: NTLM domain.",
        "workstation": "SESSION_SETUP request: NTLM workstation.",
        "anonymous": "SESSION_SETUP: anonymous (null) logon.",
        "guest": "SESSION_SETUP response: logged on as guest.",
        "login": "SESSION_SETUP response: 'success' (status 0) or 'failure' (error status).",
        "share": "Share path of TREE_CONNECT ('\\\\host\\IPC$'), and of later messages on it.",
        "share_type": "TREE_CONNECT response: 'disk', 'pipe' or 'print'.",
        "filename": "CREATE name (e.g. 'svcctl', 'PSEXESVC.exe'); file of READ/WRITE/IOCTL/CLOSE.",
        "desired_access": "CREATE request: DesiredAccess mask (int).",
        "disposition": "CREATE request: CreateDisposition name ('open', 'overwrite_if' …).",
        "create_options": "CREATE request: CreateOptions (int).",
        "create_action": "CREATE response: 0 superseded, 1 opened, 2 created, 3 overwritten.",
        "ctl_code": "IOCTL: CtlCode (int; 0x0011C017 = FSCTL_PIPE_TRANSCEIVE).",
        "length": "READ/WRITE: octets asked for / written (request) or transferred (response).",
        "offset": "READ/WRITE request: file offset.",
        "smb1": "True for an SMB1 message.",
        "truncated": f"Message longer than {BIG} octets: decoded from its start only.",
        "malformed": "The body could not be parsed to its end: the reason.",
    }

    def __init__(self) -> None:
        self._sides = (_Side(), _Side())
        self._trees: dict[int, str] = {}
        self._files: dict[bytes, str] = {}
        self._req: dict[int, dict[str, Any]] = {}  # message id -> attrs to copy to the response

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        return (
            len(data) >= 36
            and data[0] == 0
            and data[4:8] in (b"\xfeSMB", b"\xffSMB", b"\xfdSMB")
            and int.from_bytes(data[1:4], "big") >= 32
        )

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        side = self._sides[0 if from_client else 1]
        pos, n = 0, len(buf)
        out: list[Msg] = []
        while pos < n:
            if side.skip:
                take = min(side.skip, n - pos)
                pos += take
                side.skip -= take
                if side.skip:
                    break
                out += side.pending
                side.pending = []
                continue
            if n - pos < 4:
                break
            kind, ln = buf[pos], int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if kind in (0x81, 0x82, 0x83, 0x84, 0x85):  # session service control / keepalive
                if n - pos < 4 + ln:
                    break
                pos += 4 + ln
                continue
            if kind != 0:
                raise DecodeError("bad_netbios_type", f"NetBIOS session packet type 0x{kind:02x}")
            if ln < 4 or ln > MAX_MSG:
                raise DecodeError("bad_netbios_length", f"length {ln}")
            if n - pos - 4 >= ln:
                out += self._message(buf[pos + 4 : pos + 4 + ln], from_client, False)
                pos += 4 + ln
            elif ln > BIG and n - pos - 4 >= BIG:
                side.pending = self._message(buf[pos + 4 : pos + 4 + BIG], from_client, True)
                side.skip = ln - BIG
                pos += 4 + BIG
            else:
                break
        return pos, out

    def _message(self, data: bytes, from_client: bool, cut: bool) -> list[Msg]:
        proto = data[:4]
        d = "request" if from_client else "response"
        if proto == b"\xfeSMB":
            return self._smb2(data, cut)
        if proto == b"\xffSMB":
            return [self._smb1(data)]
        if proto in (b"\xfdSMB", b"\xfcSMB"):
            name = "encrypted" if proto == b"\xfdSMB" else "compressed"
            attrs = {"session_id": _u32(data, 44) | _u32(data, 48) << 32} if len(data) >= 52 else {}
            return [Msg(d, function_name=name, attrs=attrs, link=False)]
        raise DecodeError("bad_protocol_id", repr(proto))

    def _smb2(self, data: bytes, cut: bool) -> list[Msg]:
        out: list[Msg] = []
        off = 0
        while True:
            if off + 64 > len(data):
                if cut and out:
                    break
                raise DecodeError("truncated_smb2_header", f"header at {off} of {len(data)}")
            _p, size, _cc, status, cmd, _cr, flags, nxt, mid = _HDR.unpack_from(data, off)
            if size != 64:
                raise DecodeError("bad_smb2_header", f"StructureSize {size}")
            end = off + nxt if nxt else len(data)
            bad = nxt < 64 or nxt % 8 or (end >= len(data) and not cut)
            if (nxt and bad) or len(out) > 64:
                raise DecodeError("bad_next_command", f"NextCommand {nxt} at {off}")
            out.append(self._command(data[off:end], cmd, status, flags, mid, cut))
            if not nxt or end >= len(data):
                break
            off = end
        return out

    def _command(self, m: bytes, cmd: int, status: int, flags: int, mid: int, cut: bool) -> Msg:
        resp = bool(flags & 1)
        attrs: dict[str, Any] = {"session_id": int.from_bytes(m[40:48], "little")}
        tree = None if flags & 2 else _u32(m, 36)
        if tree is not None:
            attrs["tree_id"] = tree
        if resp:
            attrs["status"] = status
            if status in STATUS:
                attrs["status_name"] = STATUS[status]
        if cut:
            attrs["truncated"] = True
        try:
            self._body(m, cmd, status, resp, mid, tree, attrs)
        except DecodeError as exc:
            attrs["malformed"] = exc.reason
        error = resp and status >> 30 == 3 and status != MORE_PROCESSING
        link = not (
            cmd == 12 or (resp and status == PENDING and flags & 2) or mid == 0xFFFFFFFFFFFFFFFF
        )
        return Msg(
            "response" if resp else "request",
            function_code=cmd,
            function_name=self.fname(cmd),
            exception_code=status if error else None,
            attrs=attrs,
            match=mid,
            link=link,
        )

    def _body(
        self, m: bytes, cmd: int, status: int, resp: bool, mid: int, tree: int | None,
        attrs: dict[str, Any],
    ) -> None:  # fmt: skip
        b = 64
        if resp and mid in self._req and status != PENDING:
            attrs.update(self._req.pop(mid))
        if len(self._req) > MAX_STATE:
            self._req.clear()
        if cmd in (5, 6, 8, 9, 11) and tree is not None and tree in self._trees:
            attrs.setdefault("share", self._trees[tree])
        fid = None
        if cmd == 0:
            attrs["signing_required"] = bool(_u16(m, b + 2) & 2)
            if resp:
                dia = _u16(m, b + 4)
                attrs["dialect"] = DIALECTS.get(dia, f"0x{dia:04x}")
            else:
                count = min(_u16(m, b + 2), 32)
                ds = [_u16(m, b + 36 + 2 * i) for i in range(count)]
                attrs["dialects"] = [DIALECTS.get(x, f"0x{x:04x}") for x in ds]
        elif cmd == 1:
            if resp:
                sf = _u16(m, b + 2)
                if sf & 1:
                    attrs["guest"] = True
                if sf & 2:
                    attrs["anonymous"] = True
                if status == 0:
                    attrs["login"] = "success"
                elif status != MORE_PROCESSING and status >> 30 == 3:
                    attrs["login"] = "failure"
            else:
                off, ln = _u16(m, b + 12), _u16(m, b + 14)
                ntlm_auth(m[off : off + ln], attrs)
                if "user" in attrs:
                    self._req[mid] = {"user": attrs["user"]}
        elif cmd == 3:
            if resp:
                attrs["share_type"] = SHARE_TYPES.get(m[b + 2], str(m[b + 2]))
                if status == 0 and "share" in attrs and tree is not None:
                    self._trees[tree] = attrs["share"]
            else:
                attrs["share"] = share = _utf16(m, _u16(m, b + 4), _u16(m, b + 6))
                self._req[mid] = {"share": share}
        elif cmd == 5:
            if resp:
                attrs["create_action"] = _u32(m, b + 4)
                if status == 0 and "filename" in attrs and len(m) >= b + 80:
                    if len(self._files) > MAX_STATE:
                        self._files.clear()
                    self._files[m[b + 64 : b + 80]] = attrs["filename"]
            else:
                attrs["desired_access"] = _u32(m, b + 24)
                disp = _u32(m, b + 36)
                attrs["disposition"] = DISPOSITIONS[disp] if disp < 6 else str(disp)
                attrs["create_options"] = _u32(m, b + 40)
                attrs["filename"] = name = _utf16(m, _u16(m, b + 44), _u16(m, b + 46))
                self._req[mid] = {"filename": name}
        elif cmd == 6 and not resp:
            fid = m[b + 8 : b + 24]
        elif cmd in (8, 9):
            if resp:
                attrs["length"] = _u32(m, b + 4)
            else:
                attrs["length"] = _u32(m, b + 4)
                attrs["offset"] = int.from_bytes(m[b + 8 : b + 16], "little")
                fid = m[b + 16 : b + 32]
        elif cmd == 11:
            attrs["ctl_code"] = _u32(m, b + 4)
            if not resp:
                fid = m[b + 8 : b + 24]
        if fid is not None and fid in self._files:
            attrs["filename"] = self._files[fid]
            self._req[mid] = {"filename": self._files[fid]}
            if cmd == 6:
                del self._files[fid]

    def _smb1(self, m: bytes) -> Msg:
        if len(m) < 33:
            raise DecodeError("truncated_smb1_header", f"{len(m)} of 32 octets")
        cmd, status, flags, flags2 = m[4], _u32(m, 5), m[9], _u16(m, 10)
        resp = bool(flags & 0x80)
        tid, uid, mid = _u16(m, 24), _u16(m, 28), _u16(m, 30)
        attrs: dict[str, Any] = {"smb1": True, "tree_id": tid, "session_id": uid}
        nt = bool(flags2 & 0x4000)
        if resp:
            attrs["status"] = status
        try:
            wc = m[32]
            bytes_at = 33 + 2 * wc + 2
            if cmd == 0x72 and not resp:
                names = m[bytes_at:].split(b"\0")
                attrs["dialects"] = [x[1:].decode("latin-1") for x in names if x[:1] == b"\2"][:32]
            elif cmd == 0x72 and wc >= 1:
                attrs["dialect_index"] = _u16(m, 33)
            elif cmd == 0x75 and not resp and wc >= 4:
                p = bytes_at + _u16(m, 33 + 6)
                if flags2 & 0x8000:
                    p += p & 1
                    e = m.find(b"\0\0", p)
                    e = len(m) if e < 0 else e + ((e - p) & 1)
                    attrs["share"] = _utf16(m, p, e - p)
                else:
                    attrs["share"] = m[p:].partition(b"\0")[0].decode("latin-1")[:512]
        except (DecodeError, IndexError) as exc:
            attrs["malformed"] = exc.reason if isinstance(exc, DecodeError) else "truncated_body"
        error = resp and (status >> 30 == 3 if nt else status != 0) and status != MORE_PROCESSING
        code = 0x100 | cmd
        return Msg(
            "response" if resp else "request",
            function_code=code,
            function_name=self.fname(code),
            exception_code=status if error else None,
            attrs=attrs,
            match=("smb1", mid),
            link=cmd != 0xA4,
        )
