"""IT lateral movement over SMB2: a PsExec-like copy of an executable to ``ADMIN$`` and the
creation and start of a Windows service through ``\\PIPE\\svcctl`` (DCE/RPC, MS-SCMR).

Capture ``it_smb_psexec.pcap``: a compromised Alpha IT workstation negotiates SMB 3.0.2 with the
Alpha file server, authenticates with NTLM as ``ALPHA\\administrator``, connects to
``\\\\10.1.1.60\\ADMIN$``, creates and writes ``upd7.exe``, then connects to ``IPC$``, opens
``svcctl`` and calls OpenSCManagerW, CreateServiceW (binary ``%SystemRoot%\\upd7.exe``) and
StartServiceW. Every SMB2 message is built by hand after MS-SMB2 (64-byte header, each body
with its fixed StructureSize), NetBIOS session framing, NTLMSSP after MS-NLMP and NDR after
C706. The other IT scenarios are in :mod:`.it_login` and :mod:`.it_web`.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

from scapy.packet import Packet

from replay_pcaps.craft import Conversation
from replay_pcaps.scenarios.it_login import IT_WS, attack, by_time, labels

FILE_SRV = "10.1.1.60"

T_SMB = 1_763_990_000.0
SHARE_ADMIN = f"\\\\{FILE_SRV}\\ADMIN$"
SHARE_IPC = f"\\\\{FILE_SRV}\\IPC$"
EXE_NAME = "upd7.exe"
PIPE_NAME = "svcctl"
SERVICE_NAME = "UpdSvc7"
SERVICE_BINARY = f"%SystemRoot%\\{EXE_NAME}"
DOMAIN, USER, WORKSTATION = "ALPHA", "administrator", "WS077"
DIALECTS = [0x0202, 0x0210, 0x0300, 0x0302]
DIALECT = 0x0302
SESSION_ID = 0x0000_1000_0000_0011
TREE_ADMIN, TREE_IPC = 5, 9
EXE_CHUNK, EXE_CHUNKS = 1024, 12

NEGOTIATE, SESSION_SETUP, TREE_CONNECT, CREATE, CLOSE, READ, WRITE = 0, 1, 3, 5, 6, 8, 9
MORE_PROCESSING = 0xC0000016
SVCCTL_UUID = "367abb81-9844-35f1-ad32-98f038001003"
NDR_UUID = "8a885d04-1ceb-11c9-9fe8-08002b104860"
OPEN_SCM, CREATE_SERVICE, START_SERVICE = 15, 12, 19


def u16(n: int) -> bytes:
    return struct.pack("<H", n)


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def utf16(s: str) -> bytes:
    return s.encode("utf-16-le")


def smb2(
    cmd: int,
    mid: int,
    body: bytes,
    response: bool = False,
    status: int = 0,
    tree: int = 0,
    session: int = 0,
) -> bytes:
    """NetBIOS session message holding one SMB2 message (64-byte sync header + ``body``)."""
    header = (
        b"\xfeSMB"
        + u16(64)
        + u16(1)  # credit charge
        + u32(status)
        + u16(cmd)
        + u16(31 if response else 64)  # credits granted / requested
        + u32(1 if response else 0)  # SMB2_FLAGS_SERVER_TO_REDIR
        + u32(0)  # next command
        + u64(mid)
        + u32(0xFEFF)  # process id
        + u32(tree)
        + u64(session)
        + bytes(16)  # unsigned
    )
    msg = header + body
    return b"\0" + len(msg).to_bytes(3, "big") + msg


def ntlm_field(length: int, offset: int) -> bytes:
    return u16(length) + u16(length) + u32(offset)


NTLM_FLAGS = 0xE0088215  # 56, key exch, 128, extended security, sign, NTLM, target, unicode


def ntlm_negotiate() -> bytes:
    return b"NTLMSSP\0" + u32(1) + u32(NTLM_FLAGS) + ntlm_field(0, 0) + ntlm_field(0, 0)


def ntlm_challenge(rng: random.Random) -> bytes:
    target = utf16(DOMAIN)
    info = (
        u16(2)
        + u16(len(target))
        + target
        + u16(1)
        + u16(len(utf16("FS01")))
        + utf16("FS01")
        + u16(0)
        + u16(0)
    )
    flags = NTLM_FLAGS | 0x00800000 | 0x00010000  # target info, target type domain
    return (
        b"NTLMSSP\0"
        + u32(2)
        + ntlm_field(len(target), 48)
        + u32(flags)
        + rng.randbytes(8)
        + bytes(8)
        + ntlm_field(len(info), 48 + len(target))
        + target
        + info
    )


def ntlm_authenticate(rng: random.Random) -> bytes:
    fields = [rng.randbytes(24), rng.randbytes(24), utf16(DOMAIN), utf16(USER)]
    fields += [utf16(WORKSTATION), rng.randbytes(16)]
    offset, head, payload = 64, b"", b""
    for f in fields:
        head += ntlm_field(len(f), offset)
        payload += f
        offset += len(f)
    return b"NTLMSSP\0" + u32(3) + head + u32(NTLM_FLAGS) + payload


def uuid_le(text: str) -> bytes:
    h = text.replace("-", "")
    b = bytes.fromhex(h)
    return b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]


def dcerpc(ptype: int, call_id: int, body: bytes) -> bytes:
    """A DCE/RPC connection-oriented PDU (little-endian, no authentication)."""
    frag = 16 + len(body)
    return bytes([5, 0, ptype, 3]) + b"\x10\0\0\0" + u16(frag) + u16(0) + u32(call_id) + body


def rpc_bind() -> bytes:
    ctx = u16(0) + bytes([1, 0]) + uuid_le(SVCCTL_UUID) + u16(2) + u16(0)
    ctx += uuid_le(NDR_UUID) + u32(2)
    return dcerpc(11, 1, u16(4280) + u16(4280) + u32(0) + bytes([1, 0, 0, 0]) + ctx)


def rpc_bind_ack() -> bytes:
    sec = b"\\PIPE\\svcctl\0"
    body = u16(4280) + u16(4280) + u32(0x12345) + u16(len(sec)) + sec
    body += bytes(-(16 + len(body)) % 4)
    body += bytes([1, 0, 0, 0]) + u16(0) + u16(0) + uuid_le(NDR_UUID) + u32(2)
    return dcerpc(12, 1, body)


def rpc_request(call_id: int, opnum: int, stub: bytes) -> bytes:
    return dcerpc(0, call_id, u32(len(stub)) + u16(0) + u16(opnum) + stub)


def rpc_response(call_id: int, stub: bytes) -> bytes:
    return dcerpc(2, call_id, u32(len(stub)) + u16(0) + bytes([0, 0]) + stub)


def ndr_string(s: str) -> bytes:
    """A conformant varying UTF-16 string with its terminator, padded to 4 bytes."""
    data = utf16(s + "\0")
    n = len(s) + 1
    return u32(n) + u32(0) + u32(n) + data + bytes(-len(data) % 4)


def svcctl_calls(rng: random.Random) -> list[tuple[int, bytes, bytes]]:
    """(opnum, request stub, response stub) of OpenSCManagerW, CreateServiceW, StartServiceW."""
    scm = u32(0) + rng.randbytes(16)
    svc = u32(0) + rng.randbytes(16)
    open_scm = u32(0x20000) + ndr_string(f"\\\\{FILE_SRV}") + u32(0) + u32(0x000F003F)
    create = (
        scm
        + ndr_string(SERVICE_NAME)
        + u32(0x20004)
        + ndr_string(SERVICE_NAME)
        + u32(0x000F01FF)  # SERVICE_ALL_ACCESS
        + u32(0x10)  # SERVICE_WIN32_OWN_PROCESS
        + u32(3)  # SERVICE_DEMAND_START
        + u32(0)  # SERVICE_ERROR_IGNORE
        + ndr_string(SERVICE_BINARY)
        + u32(0)  # load order group
        + u32(0)  # tag id
        + u32(0)  # dependencies
        + u32(0)
        + u32(0)  # service start name: LocalSystem
        + u32(0)  # password
        + u32(0)
    )
    start = svc + u32(0) + u32(0)
    return [
        (OPEN_SCM, open_scm, scm + u32(0)),
        (CREATE_SERVICE, create, u32(0) + svc + u32(0)),
        (START_SERVICE, start, u32(0)),
    ]


def smb_psexec() -> tuple[list[Packet], dict[str, Any]]:
    rng = random.Random(1021)
    out: list[Packet] = []
    c = Conversation(out, IT_WS, FILE_SRV, 49820, 445)
    t = c.open(T_SMB + 1)
    mid = 0

    def call(req: bytes, resp: bytes, delay: float = 0.002) -> None:
        nonlocal t, mid
        c.send(t, True, "PA", req)
        c.send(t + delay, False, "PA", resp)
        t += delay + 0.01
        mid += 1

    guid = rng.randbytes(16)
    neg = u16(36) + u16(len(DIALECTS)) + u16(1) + u16(0) + u32(0x7F) + guid + u64(0)
    neg += b"".join(u16(d) for d in DIALECTS)
    filetime = 134_083_000_000_000_000
    neg_resp = (
        u16(65)
        + u16(1)
        + u16(DIALECT)
        + u16(0)
        + rng.randbytes(16)
        + u32(0x2F)
        + u32(8 << 20) * 3
        + u64(filetime)
        + u64(0)
        + u16(128)
        + u16(0)
        + u32(0)
    )
    call(smb2(NEGOTIATE, mid, neg), smb2(NEGOTIATE, mid, neg_resp, response=True))

    def setup(blob: bytes) -> bytes:
        return u16(25) + bytes([0, 1]) + u32(1) + u32(0) + u16(88) + u16(len(blob)) + u64(0) + blob

    def setup_resp(blob: bytes) -> bytes:
        return u16(9) + u16(0) + u16(72 if blob else 0) + u16(len(blob)) + blob

    call(
        smb2(SESSION_SETUP, mid, setup(ntlm_negotiate())),
        smb2(
            SESSION_SETUP,
            mid,
            setup_resp(ntlm_challenge(rng)),
            response=True,
            status=MORE_PROCESSING,
            session=SESSION_ID,
        ),
    )
    call(
        smb2(SESSION_SETUP, mid, setup(ntlm_authenticate(rng)), session=SESSION_ID),
        smb2(SESSION_SETUP, mid, setup_resp(b""), response=True, session=SESSION_ID),
        0.02,
    )
    attack_start = len(out) - 4  # from the authentication on

    def tree_connect(path: str, tree: int, share_type: int) -> None:
        name = utf16(path)
        req = u16(9) + u16(0) + u16(72) + u16(len(name)) + name
        resp = u16(16) + bytes([share_type, 0]) + u32(0) + u32(0) + u32(0x001F01FF)
        call(
            smb2(TREE_CONNECT, mid, req, session=SESSION_ID),
            smb2(TREE_CONNECT, mid, resp, response=True, tree=tree, session=SESSION_ID),
        )

    def create(tree: int, name: str, access: int, disposition: int, options: int) -> bytes:
        fid = rng.randbytes(16)
        n = utf16(name)
        req = (
            u16(57)
            + bytes([0, 0])
            + u32(2)  # impersonation
            + u64(0)
            + u64(0)
            + u32(access)
            + u32(0x80)  # FILE_ATTRIBUTE_NORMAL
            + u32(7)  # share read/write/delete
            + u32(disposition)
            + u32(options)
            + u16(120)
            + u16(len(n))
            + u32(0)
            + u32(0)
            + n
        )
        resp = (
            u16(89)
            + bytes([0, 0])
            + u32(2 if disposition == 5 else 1)  # created / opened
            + u64(filetime) * 4
            + u64(0)
            + u64(0)
            + u32(0x80)
            + u32(0)
            + fid
            + u32(0)
            + u32(0)
        )
        call(
            smb2(CREATE, mid, req, tree=tree, session=SESSION_ID),
            smb2(CREATE, mid, resp, response=True, tree=tree, session=SESSION_ID),
        )
        return fid

    def write(tree: int, fid: bytes, offset: int, data: bytes) -> None:
        req = u16(49) + u16(112) + u32(len(data)) + u64(offset) + fid
        req += u32(0) + u32(0) + u16(0) + u16(0) + u32(0) + data
        resp = u16(17) + u16(0) + u32(len(data)) + u32(0) + u16(0) + u16(0)
        call(
            smb2(WRITE, mid, req, tree=tree, session=SESSION_ID),
            smb2(WRITE, mid, resp, response=True, tree=tree, session=SESSION_ID),
        )

    def read(tree: int, fid: bytes, data: bytes) -> None:
        req = u16(49) + bytes([0x50, 0]) + u32(4280) + u64(0) + fid
        req += u32(0) + u32(0) + u32(0) + u16(0) + u16(0) + b"\0"
        resp = u16(17) + bytes([80, 0]) + u32(len(data)) + u32(0) + u32(0) + data
        call(
            smb2(READ, mid, req, tree=tree, session=SESSION_ID),
            smb2(READ, mid, resp, response=True, tree=tree, session=SESSION_ID),
        )

    def close(tree: int, fid: bytes) -> None:
        req = u16(24) + u16(0) + u32(0) + fid
        resp = u16(60) + u16(0) + u32(0) + bytes(48) + u32(0)
        call(
            smb2(CLOSE, mid, req, tree=tree, session=SESSION_ID),
            smb2(CLOSE, mid, resp, response=True, tree=tree, session=SESSION_ID),
        )

    tree_connect(SHARE_ADMIN, TREE_ADMIN, 1)
    fid = create(TREE_ADMIN, EXE_NAME, 0x0012019F, 5, 0x44)  # overwrite_if, non-dir file
    exe = b"MZ\x90\0\3\0\0\0\4\0\0\0\xff\xff" + rng.randbytes(EXE_CHUNK * EXE_CHUNKS - 14)
    for k in range(EXE_CHUNKS):
        write(TREE_ADMIN, fid, k * EXE_CHUNK, exe[k * EXE_CHUNK : (k + 1) * EXE_CHUNK])
    close(TREE_ADMIN, fid)
    tree_connect(SHARE_IPC, TREE_IPC, 2)
    pipe = create(TREE_IPC, PIPE_NAME, 0x0012019F, 1, 0)  # open
    write(TREE_IPC, pipe, 0, rpc_bind())
    read(TREE_IPC, pipe, rpc_bind_ack())
    for call_id, (opnum, req, resp) in enumerate(svcctl_calls(rng), start=2):
        write(TREE_IPC, pipe, 0, rpc_request(call_id, opnum, req))
        read(TREE_IPC, pipe, rpc_response(call_id, resp))
    close(TREE_IPC, pipe)
    atk = attack(
        "smb-psexec-1",
        "lateral_movement",
        ["T1021.002", "T1570", "T1569.002"],
        out[attack_start:],
        [IT_WS],
        [FILE_SRV],
        "succeeded",
    )
    c.close(t + 1)
    return by_time(out), labels(
        f"PsExec-like lateral movement from {IT_WS} to {FILE_SRV}: NTLM logon as "
        f"{DOMAIN}\\{USER}, {EXE_NAME} copied to ADMIN$, service {SERVICE_NAME} created and "
        "started through \\PIPE\\svcctl.",
        [atk],
        "All calls succeed; the attack window starts at the NTLM authentication.",
    )


SCENARIOS: dict[str, Callable[[], tuple[list[Packet], dict[str, Any] | None]]] = {
    "it_smb_psexec.pcap": smb_psexec,
}
