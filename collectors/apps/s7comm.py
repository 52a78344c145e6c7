"""S7comm and S7comm-plus over ISO-on-TCP (TPKT RFC 1006 + COTP ISO 8073 class 0, port 102).

One decoder, name ``s7comm``, for both Siemens protocols behind a COTP data TPDU: protocol id
0x32 (S7comm, S7-300/400 and the S7-1200/1500 "put/get" access) and 0x72 (S7comm-plus, TIA
Portal and S7-1200/1500), the latter with ``attrs['variant'] = 's7comm-plus'``. COTP data split
over several DT TPDUs (no EOT) is reassembled first. COTP connection TPDUs give no event; the
TSAPs of a connection request go on the next event of the connection (``src_tsap`` /
``dst_tsap``: 'SIMATIC-ROOT-ES' marks TIA Portal engineering access).
Other payloads on ISO transport (IEC 61850 MMS shares port 102) are skipped silently.

Event fields (S7comm): ``function_code`` = the parameter function code of a job / ack-data
(read var 0x04, write var 0x05, request download 0x1a …, see
:data:`~collectors.apps.s7comm_tables.FUNCTIONS`); for user data 0x1000 | group << 8 |
subfunction (read SZL = 0x1401). ``direction``: job and user-data requests are requests,
ack / ack-data and user-data responses are responses (whoever sends them: in a download the PLC
sends the download-block jobs), user-data push messages (cyclic data, alarms, mode
transitions) are responses with ``link=False``. ``match`` = the PDU reference.
``exception_code`` = error class << 8 | error code of an ack / ack-data header, or the user-data
parameter error code (e.g. 0xd209, block not found), when non-zero. Read/write var: ``data_area``
= area of the first item in Siemens notation ('DB1', 'I', 'Q', 'M' …), ``address`` its byte
address, ``quantity`` its element count, ``values`` the octets a write sets (first item); block
functions: ``data_area`` = the block ('OB1', 'SDB0'), ``address`` its number. S7comm-plus:
``function_code`` = the function (0x04ca CreateObject …), ``match`` = its sequence number,
direction from the opcode.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register
from collectors.apps.s7comm_job import MAX_ITEMS as MAX_ITEMS
from collectors.apps.s7comm_job import (
    _block_data,
    _filename,
    _items,
    _part2,
    _pi_service,
    _return_codes,
    _Short,
    _write_values,
    block_name,
)
from collectors.apps.s7comm_tables import (
    ATTRS,
    BLOCK_TYPES,
    ERROR_CLASSES,
    FUNCTIONS,
    PLUS_OPCODES,
    ROSCTR,
    USERDATA_BASE,
    USERDATA_GROUPS,
)

MAX_TPDU = 65536
"""Octets of COTP data a direction may reassemble before it is dropped."""

_HDR = struct.Struct(">BBHHHH")  # protocol id, rosctr, redundancy id, pdu ref, param len, data len


@register
class S7comm(AppDecoder):
    """S7comm / S7comm-plus decoder over TPKT + COTP."""

    name = "s7comm"
    tcp_ports = (102,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = ATTRS

    def __init__(self) -> None:
        self._frag: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
        self._tsaps: dict[str, str] = {}

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 7 or data[0] != 3 or data[1] != 0:
            return False
        length, li = int.from_bytes(data[2:4], "big"), data[4]
        if length < 7 or li + 5 > length or len(data) < min(length, li + 8):
            return False
        kind = data[5] & 0xF0
        if kind == 0xE0:  # connection request: class 0..4 in the upper nibble of octet 10
            return li >= 6 and len(data) >= 11 and data[10] >> 4 <= 4 and data[6:8] == b"\0\0"
        if kind == 0xF0 and li == 2 and len(data) >= 9:
            return data[7] == 0x72 or (data[7] == 0x32 and data[8] in ROSCTR)
        return False

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        msgs: list[Msg] = []
        pos, end = 0, len(buf)
        while end - pos >= 4:
            try:
                if buf[pos] != 3 or buf[pos + 1] != 0:
                    raise DecodeError("bad_tpkt", f"version {buf[pos]}, reserved {buf[pos + 1]}")
                (length,) = struct.unpack_from(">H", buf, pos + 2)
                if length < 7:
                    raise DecodeError("bad_tpkt_length", f"TPKT length {length} < 7")
                if end - pos < length:
                    break
                msg = self._cotp(bytes(buf[pos + 4 : pos + length]), from_client)
            except DecodeError:
                if msgs:  # report the good PDUs first; the bad one raises on the next call
                    break
                raise
            pos += length
            if msg is not None:
                msgs.append(msg)
        return pos, msgs

    def _cotp(self, tpdu: bytes, from_client: bool) -> Msg | None:
        li = tpdu[0]
        if li + 1 > len(tpdu) or li == 0:
            raise DecodeError("bad_cotp_length", f"length indicator {li}, {len(tpdu)} octets")
        kind = tpdu[1] & 0xF0
        if kind == 0xE0:
            self._tsaps = _tsaps(tpdu[7 : li + 1])
            return None
        if kind != 0xF0:
            return None  # CC, DR, DC, ER …: connection management, no event
        if li < 2:
            raise DecodeError("bad_cotp_length", f"DT with length indicator {li}")
        frag = self._frag[from_client]
        frag += tpdu[li + 1 :]
        if len(frag) > MAX_TPDU:
            frag.clear()
            raise DecodeError("tpdu_too_large", f"COTP data beyond {MAX_TPDU} octets")
        if not tpdu[2] & 0x80:  # no EOT: more DT TPDUs follow
            return None
        data = bytes(frag)
        frag.clear()
        if not data:
            return None
        if data[0] == 0x32:
            msg = _s7(data)
        elif data[0] == 0x72:
            msg = _plus(data)
        else:
            return None  # another protocol on ISO transport (MMS …)
        if msg is not None and self._tsaps:  # the first message after the connection request
            msg.attrs.update(self._tsaps)
            self._tsaps = {}
        return msg


def _tsaps(params: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos + 2 <= len(params):
        code, n = params[pos], params[pos + 1]
        value = params[pos + 2 : pos + 2 + n]
        if code == 0xC1:
            out["src_tsap"] = _tsap_text(value)
        elif code == 0xC2:
            out["dst_tsap"] = _tsap_text(value)
        pos += 2 + n
    return out


def _tsap_text(value: bytes) -> str:
    if len(value) > 2 and all(0x20 <= b < 0x7F for b in value):
        return value.decode("ascii")
    return value.hex()


def _s7(pdu: bytes) -> Msg | None:
    if len(pdu) < 10:
        raise DecodeError("truncated_s7_header", f"{len(pdu)} octets")
    _pid, rosctr, _red, ref, plen, dlen = _HDR.unpack_from(pdu)
    if rosctr not in ROSCTR:
        raise DecodeError("bad_rosctr", f"ROSCTR {rosctr}")
    hlen = 12 if rosctr in (2, 3) else 10
    attrs: dict[str, Any] = {
        "variant": "s7comm",
        "rosctr": rosctr,
        "rosctr_name": ROSCTR[rosctr],
        "pdu_ref": ref,
    }
    msg = Msg("request" if rosctr == 1 else "response", attrs=attrs, match=ref)
    if len(pdu) < hlen:
        attrs["malformed"] = "ack header truncated"
        return msg
    if hlen == 12:
        cls, code = pdu[10], pdu[11]
        attrs["error_class"], attrs["error_code"] = cls, code
        attrs["error_class_name"] = ERROR_CLASSES.get(cls, f"unknown-{cls}")
        if cls or code:
            msg.exception_code = cls << 8 | code
    param = pdu[hlen : hlen + plen]
    data = pdu[hlen + plen : hlen + plen + dlen]
    if len(param) < plen or len(data) < dlen:
        attrs["malformed"] = f"parameter {plen} + data {dlen} octets, {len(pdu) - hlen} present"
    if rosctr == 2 and not param:
        msg.function_name = "ack"
        return msg
    try:
        if rosctr == 7:
            _userdata(msg, param, data)
        else:
            _job(msg, param, data, rosctr == 1)
    except (_Short, struct.error, IndexError) as err:
        attrs["malformed"] = str(err) or "short"
    return msg


def _job(msg: Msg, param: bytes, data: bytes, job: bool) -> None:
    if not param:
        raise _Short("no parameter part")
    fc = param[0]
    msg.function_code, msg.function_name = fc, S7comm.fname(fc)
    a = msg.attrs
    if fc == 0xF0 and len(param) >= 8:
        a["max_amq_calling"], a["max_amq_called"], a["pdu_length"] = struct.unpack_from(
            ">HHH", param, 2
        )
    elif fc in (0x04, 0x05):
        a["item_count"] = param[1] if len(param) > 1 else 0
        if job:
            _items(msg, param)
            if fc == 0x05:
                _write_values(msg, data)
        else:
            _return_codes(msg, data, fc)
    elif fc in (0x1A, 0x1B, 0x1C):
        if job:
            _filename(msg, param, 8)
            if fc == 0x1A and len(param) > 18 + param[8] - 9:
                _part2(msg, param[9 + param[8] :])
        elif fc == 0x1B and len(param) >= 2:
            _block_data(msg, param, data)
    elif fc in (0x1D, 0x1E, 0x1F):
        if len(param) >= 8:
            a["upload_id"] = int.from_bytes(param[4:8], "big")
        if fc == 0x1D and len(param) >= 9:
            name = param[9 : 9 + param[8]].decode("latin-1")
            if job:
                _filename(msg, param, 8)
            else:
                a["block_length"] = name
        elif fc == 0x1E and not job:
            _block_data(msg, param, data)
    elif fc == 0x28 and job:
        _pi_service(msg, param)
    elif fc == 0x29 and job and len(param) >= 7:
        a["pi_service"] = param[7 : 7 + param[6]].decode("latin-1")


def _plus(pdu: bytes) -> Msg | None:
    if len(pdu) < 4:
        raise DecodeError("truncated_s7comm_plus", f"{len(pdu)} octets")
    version = pdu[1]
    attrs: dict[str, Any] = {"variant": "s7comm-plus", "plus_version": version}
    off = 4
    if version in (2, 3) and len(pdu) > 5 and pdu[4] == 0x20:  # integrity digest (32 octets)
        off = 4 + 1 + 32
    if len(pdu) < off + 1:
        return Msg("request", function_name="s7comm-plus", attrs=attrs, link=False)
    opcode = pdu[off]
    attrs["plus_opcode"] = opcode
    direction = "request" if opcode == 0x31 else "response"
    msg = Msg(direction, attrs=attrs, link=opcode in (0x31, 0x32))
    if opcode in PLUS_OPCODES and len(pdu) >= off + 9:
        fn = int.from_bytes(pdu[off + 3 : off + 5], "big")
        seq = int.from_bytes(pdu[off + 7 : off + 9], "big")
        msg.function_code, msg.function_name = fn, S7comm.fname(fn)
        attrs["plus_seq"], msg.match = seq, ("plus", seq)
        if opcode == 0x31 and len(pdu) >= off + 13:
            attrs["session_id"] = int.from_bytes(pdu[off + 9 : off + 13], "big")
    else:
        msg.function_name = f"s7comm-plus-{PLUS_OPCODES.get(opcode, f'opcode-{opcode}')}"
    return msg


_UD_TYPES = {0x0: "push", 0x3: "push", 0x4: "request", 0x7: "request", 0x8: "response"}
_UD_TYPES[0xB] = "response"


def _userdata(msg: Msg, param: bytes, data: bytes) -> None:
    if len(param) < 8:  # head 0x000112 (0x010010 in mode-transition pushes): not checked
        raise _Short("user-data parameter truncated")
    a = msg.attrs
    kind, group, sub = param[5] >> 4, param[5] & 0x0F, param[6]
    ud_type = _UD_TYPES.get(kind, f"type_{kind}")
    code = USERDATA_BASE | group << 8 | sub
    msg.function_code = code
    msg.function_name = FUNCTIONS.get(
        code, f"{USERDATA_GROUPS.get(group, f'group_{group}')}/unknown-{sub}"
    )
    msg.direction = "request" if ud_type == "request" else "response"
    msg.link = ud_type != "push"
    a.update(group=group, group_name=USERDATA_GROUPS.get(group, f"unknown-{group}"))
    a.update(subfunction=sub, type=ud_type, seq=param[7])
    if len(param) >= 12:
        a["last_data_unit"] = param[9] == 0
        err = int.from_bytes(param[10:12], "big")
        if err:
            msg.exception_code = err
    if len(data) < 4:
        return
    a["return_code"] = data[0]
    payload = data[4 : 4 + int.from_bytes(data[2:4], "big")]
    if group == 4 and sub == 1 and len(payload) >= 4 and a.get("last_data_unit", True):
        a["szl_id"], a["szl_index"] = struct.unpack_from(">HH", payload)
    elif group == 7 and len(payload) >= 10:
        clock = _bcd_time(payload[:10])
        if clock:
            a["clock"] = clock
    elif group == 3 and sub == 3 and len(payload) >= 8:  # get block info request
        text = payload[:8].decode("latin-1")
        if text[2:7].isdigit():
            btype = BLOCK_TYPES.get(text[0:2].upper(), text[0:2])
            a.update(block_type=btype, block_number=int(text[2:7]))
            msg.data_area = f"{btype}{int(text[2:7])}"


def _bcd_time(raw: bytes) -> str | None:
    digits = raw.hex()
    if not digits[2:18].isdigit():
        return None
    year = int(digits[2:6])
    if year < 1990 or year > 2089:  # two-digit years: the century octet may be 0x00
        year = 1900 + int(digits[4:6]) if int(digits[4:6]) >= 90 else 2000 + int(digits[4:6])
    mon, day, hh, mm, ss = (int(digits[i : i + 2]) for i in range(6, 16, 2))
    ms = int(digits[16:19]) if digits[16:19].isdigit() else 0
    return f"{year:04d}-{mon:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{ms:03d}"


__all__ = ["S7comm", "block_name"]
