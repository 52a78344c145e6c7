"""IEC 60870-5-104 (TCP port 2404): one event per I-frame ASDU and per U-frame.

Spec: IEC 60870-5-104 (transport profile: APCI = start 0x68, length, four control octets) and
IEC 60870-5-101 (ASDU: type id, variable structure qualifier, 2-octet cause of transmission,
2-octet common address, 3-octet information object addresses as 104 fixes them).

Events:

- **U-frames** (STARTDT/STOPDT/TESTFR act and con): ``function_code`` None, ``function_name``
  'STARTDT_act' … 'TESTFR_con'; act = request, con = response (matched per function).
- **I-frames**: ``function_code`` = ASDU type id, ``unit`` = common address, ``address`` = IOA of
  the first information object, ``quantity`` = number of objects (VSQ), ``values`` = command or
  set-point value of every object for C_SC/C_DC/C_RC/C_SE/C_BO (45-51, 58-64) and the
  parameters P_ME (110-112). Direction from the protocol: a control-direction type (commands,
  system commands, parameters) with cause act/deact/req is a request; its confirmations,
  terminations and every monitor-direction type are responses. act <-> actcon (and
  deact <-> deactcon, negative confirms, C_RD <-> cause 'req' data) are matched by
  (type id, common address, IOA); actterm, spontaneous/periodic/background/interrogated data
  and end-of-initialisation answer no request (``link=False``).
- ``exception_code`` = cause of transmission (without the P/N and test bits) of a negative
  confirm (P/N bit set) or of a cause 44-47 (unknown type / cause / common address / IOA).
- **S-frames** are acknowledgements only: consumed, no event (tshark shows them with
  ``iec60870_104.type`` 1 and no type id).

An ASDU too short for its header or whose objects do not fit its length still gives its event
(as tshark dissects it and flags it malformed) with ``attrs['malformed']``; only an APCI that
cannot be 104 (start octet not 0x68, length < 4) is a :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register

FUNCTIONS: dict[int, str] = {
    1: "M_SP_NA_1", 2: "M_SP_TA_1", 3: "M_DP_NA_1", 4: "M_DP_TA_1", 5: "M_ST_NA_1",
    6: "M_ST_TA_1", 7: "M_BO_NA_1", 8: "M_BO_TA_1", 9: "M_ME_NA_1", 10: "M_ME_TA_1",
    11: "M_ME_NB_1", 12: "M_ME_TB_1", 13: "M_ME_NC_1", 14: "M_ME_TC_1", 15: "M_IT_NA_1",
    16: "M_IT_TA_1", 17: "M_EP_TA_1", 18: "M_EP_TB_1", 19: "M_EP_TC_1", 20: "M_PS_NA_1",
    21: "M_ME_ND_1", 30: "M_SP_TB_1", 31: "M_DP_TB_1", 32: "M_ST_TB_1", 33: "M_BO_TB_1",
    34: "M_ME_TD_1", 35: "M_ME_TE_1", 36: "M_ME_TF_1", 37: "M_IT_TB_1", 38: "M_EP_TD_1",
    39: "M_EP_TE_1", 40: "M_EP_TF_1", 41: "S_IT_TC_1", 45: "C_SC_NA_1", 46: "C_DC_NA_1",
    47: "C_RC_NA_1", 48: "C_SE_NA_1", 49: "C_SE_NB_1", 50: "C_SE_NC_1", 51: "C_BO_NA_1",
    58: "C_SC_TA_1", 59: "C_DC_TA_1", 60: "C_RC_TA_1", 61: "C_SE_TA_1", 62: "C_SE_TB_1",
    63: "C_SE_TC_1", 64: "C_BO_TA_1", 70: "M_EI_NA_1", 81: "S_CH_NA_1", 82: "S_RP_NA_1",
    83: "S_AR_NA_1", 84: "S_KR_NA_1", 85: "S_KS_NA_1", 86: "S_KC_NA_1", 87: "S_ER_NA_1",
    90: "S_US_NA_1", 91: "S_UQ_NA_1", 92: "S_UR_NA_1", 93: "S_UK_NA_1", 94: "S_UA_NA_1",
    95: "S_UC_NA_1", 100: "C_IC_NA_1", 101: "C_CI_NA_1", 102: "C_RD_NA_1", 103: "C_CS_NA_1",
    104: "C_TS_NA_1", 105: "C_RP_NA_1", 106: "C_CD_NA_1", 107: "C_TS_TA_1", 110: "P_ME_NA_1",
    111: "P_ME_NB_1", 112: "P_ME_NC_1", 113: "P_AC_NA_1", 120: "F_FR_NA_1", 121: "F_SR_NA_1",
    122: "F_SC_NA_1", 123: "F_LS_NA_1", 124: "F_AF_NA_1", 125: "F_SG_NA_1", 126: "F_DR_TA_1",
    127: "F_SC_NB_1",
}  # fmt: skip

CAUSES: dict[int, str] = {
    1: "per/cyc", 2: "back", 3: "spont", 4: "init", 5: "req", 6: "act", 7: "actcon",
    8: "deact", 9: "deactcon", 10: "actterm", 11: "retrem", 12: "retloc", 13: "file",
    14: "auth", 15: "seskey", 16: "usrkey", 20: "inrogen", 37: "reqcogen",
    44: "unknown_type_id", 45: "unknown_cause", 46: "unknown_common_address",
    47: "unknown_ioa",
}  # fmt: skip
CAUSES.update({20 + g: f"inro{g}" for g in range(1, 17)})
CAUSES.update({37 + g: f"reqco{g}" for g in range(1, 5)})

U_FUNCTIONS = {
    0x07: "STARTDT_act", 0x0B: "STARTDT_con", 0x13: "STOPDT_act", 0x23: "STOPDT_con",
    0x43: "TESTFR_act", 0x83: "TESTFR_con",
}  # fmt: skip

# Octets of one information element (without its IOA) per type id, where fixed.
ELEMENT_SIZE: dict[int, int] = {
    1: 1, 2: 4, 3: 1, 4: 4, 5: 2, 6: 5, 7: 5, 8: 8, 9: 3, 10: 6, 11: 3, 12: 6, 13: 5, 14: 8,
    15: 5, 16: 8, 17: 6, 18: 7, 19: 7, 20: 5, 21: 2, 30: 8, 31: 8, 32: 9, 33: 12, 34: 10,
    35: 10, 36: 12, 37: 12, 38: 10, 39: 11, 40: 11, 45: 1, 46: 1, 47: 1, 48: 3, 49: 3, 50: 5,
    51: 4, 58: 8, 59: 8, 60: 8, 61: 10, 62: 10, 63: 12, 64: 11, 70: 1, 100: 1, 101: 1, 102: 0,
    103: 7, 104: 2, 105: 1, 106: 2, 107: 9, 110: 3, 111: 3, 112: 5, 113: 1,
}  # fmt: skip

CONTROL = frozenset(range(45, 70)) | frozenset(range(100, 114))
MONITOR = frozenset(range(1, 45)) | {70}
QUALIFIED = {100: "qoi", 101: "qcc", 105: "qrp", 113: "qpa"}
NEGATIVE_CAUSES = frozenset((44, 45, 46, 47))
CONFIRMS = {7: 6, 9: 8}  # actcon answers act, deactcon answers deact

_NVA = struct.Struct("<hB")
_FLT = struct.Struct("<fB")
_U32 = struct.Struct("<I")


def _value(typeid: int, data: bytes, off: int) -> tuple[Any, int]:
    """(value, qualifier octet) of a command / set-point element at ``off``."""
    base = typeid - 13 if 58 <= typeid <= 64 else typeid  # time-tagged variants
    if base in (45, 46, 47):
        b = data[off]
        return (b & 1 if base == 45 else b & 3), b
    if base in (48, 110):
        v, q = _NVA.unpack_from(data, off)
        return v / 32768.0, q
    if base in (49, 111):
        v, q = _NVA.unpack_from(data, off)
        return v, q
    if base in (50, 112):
        f, q = _FLT.unpack_from(data, off)
        return f, q
    return _U32.unpack_from(data, off)[0], 0  # 51 bitstring of 32 bits


@register
class Iec104Decoder(AppDecoder):
    name = "iec104"
    tcp_ports = (2404,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "frame": "APCI format: 'I' (information transfer) or 'U' (unnumbered control).",
        "ns": "I-frame send sequence number N(S).",
        "nr": "I-frame receive sequence number N(R).",
        "cot": "Cause of transmission (6 bits, without the P/N and test bits).",
        "cot_name": "Name of the cause ('spont', 'act', 'actcon', 'inrogen', …).",
        "negative": "P/N bit: True for a negative confirm.",
        "test": "T bit: True for a test ASDU.",
        "originator": "Originator address octet of the cause of transmission.",
        "sq": "VSQ SQ bit: True when the objects are one sequence from one IOA.",
        "select": "Command / set-point S/E bit: True = select, False = execute.",
        "qualifier": "Qualifier octet: QU of commands, QOS of set points, QOI/QCC/QRP/QPA.",
        "malformed": "What is wrong with an ASDU too short for its header or objects.",
    }

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 6 or data[0] != 0x68 or not 4 <= data[1] <= 253:
            return False
        end = 2 + data[1]
        if len(data) > end and data[end] != 0x68:
            return False
        c0 = data[2]
        if data[1] == 4:
            if c0 & 3 == 3:
                return c0 in U_FUNCTIONS and data[3:6] == b"\x00\x00\x00"
            return c0 == 1 and data[3] == 0 and not data[4] & 1
        if c0 & 1 or data[1] < 10 or len(data) < 12 or data[4] & 1:
            return False
        typeid, count, sq = data[6], data[7] & 0x7F, data[7] & 0x80
        if typeid not in FUNCTIONS or not 1 <= data[8] & 0x3F <= 47 or not count:
            return False
        if len(data) < end:
            return False  # the first segment of a 104 connection holds whole APDUs
        size = ELEMENT_SIZE.get(typeid)
        return size is None or data[1] - 10 == (3 + size * count if sq else (3 + size) * count)

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        pos, n = 0, len(buf)
        msgs: list[Msg] = []
        while n - pos >= 2:
            if buf[pos] != 0x68 or buf[pos + 1] < 4:
                if msgs:
                    break
                what = f"start 0x{buf[pos]:02x} length {buf[pos + 1]}"
                raise DecodeError("bad_apci", what)
            end = pos + 2 + buf[pos + 1]
            if end > n:
                break
            msg = self._apdu(buf, pos + 2, end, from_client)
            if msg is not None:
                msgs.append(msg)
            pos = end
        return pos, msgs

    def _apdu(self, buf: bytes, at: int, end: int, from_client: bool) -> Msg | None:
        c0 = buf[at]
        if c0 & 1 == 0:
            return self._i_frame(buf, at, end, from_client)
        if c0 & 3 == 1:
            return None  # S-frame: acknowledgement only
        name = U_FUNCTIONS.get(c0, f"unknown-U-0x{c0:02x}")
        con = bool(c0 & 0xA8)  # the con bit of STARTDT (0x08), STOPDT (0x20) or TESTFR (0x80)
        direction = "response" if con else "request"
        return Msg(direction, None, name, attrs={"frame": "U"}, match=("U", name.split("_")[0]))

    def _i_frame(self, buf: bytes, at: int, end: int, from_client: bool) -> Msg:
        ns = int.from_bytes(buf[at : at + 2], "little") >> 1
        nr = int.from_bytes(buf[at + 2 : at + 4], "little") >> 1
        attrs: dict[str, Any] = {"frame": "I", "ns": ns, "nr": nr}
        a = at + 4
        if end - a < 6:
            attrs["malformed"] = f"ASDU of {end - a} octets, header needs 6"
            typeid = buf[a] if end > a else None
            fname = self.fname(typeid) if typeid is not None else None
            dirn = "request" if from_client else "response"
            return Msg(dirn, typeid, fname, attrs=attrs, link=False)
        typeid, vsq, cot_b, orig = buf[a], buf[a + 1], buf[a + 2], buf[a + 3]
        ca = int.from_bytes(buf[a + 4 : a + 6], "little")
        cot, negative = cot_b & 0x3F, bool(cot_b & 0x40)
        count, sq = vsq & 0x7F, bool(vsq & 0x80)
        attrs.update(
            cot=cot,
            cot_name=CAUSES.get(cot, f"unknown-{cot}"),
            negative=negative,
            test=bool(cot_b & 0x80),
            originator=orig,
            sq=sq,
        )
        o = a + 6
        ioa = int.from_bytes(buf[o : o + 3], "little") if end - o >= 3 else None
        values = self._objects(buf, o, end, typeid, count, sq, attrs)
        exc = cot if negative or cot in NEGATIVE_CAUSES else None
        if typeid in CONTROL:
            request = cot in (6, 8) or (cot == 5 and typeid == 102)
        elif typeid in MONITOR:
            request = False
        else:
            request = from_client
        if request:
            match: Any = (typeid, ca, ioa)
            link = True
        elif typeid in CONTROL and (cot in CONFIRMS or exc is not None):
            match, link = (typeid, ca, ioa), True
        elif cot == 5 and typeid in MONITOR:
            match, link = (102, ca, ioa), True  # data answering a read command
        else:
            match, link = None, False
        return Msg(
            "request" if request else "response",
            typeid,
            self.fname(typeid),
            unit=ca,
            exception_code=exc,
            address=ioa,
            quantity=count,
            values=values,
            attrs=attrs,
            match=match,
            link=link,
        )

    @staticmethod
    def _objects(
        buf: bytes, o: int, end: int, typeid: int, count: int, sq: bool, attrs: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        size = ELEMENT_SIZE.get(typeid)
        if size is None:
            return None
        need = (3 + size * count) if sq else (3 + size) * count
        if end - o < need:
            attrs["malformed"] = f"{count} objects need {need} octets, {end - o} present"
            return None
        if typeid in QUALIFIED and count:
            attrs["qualifier"] = buf[o + 3]
        if not (45 <= typeid <= 64 or 110 <= typeid <= 112) or not count:
            return None
        step, first = (size, o + 3) if sq else (3 + size, o + 3)
        values, qual = [], 0
        for k in range(count):
            v, q = _value(typeid, buf, first + k * step)
            values.append(v)
            if k == 0:
                qual = q
        base = typeid - 13 if 58 <= typeid <= 64 else typeid
        if base in (45, 46, 47):  # SCO / DCO / RCO: S/E bit 7, QU bits 2-6
            attrs["select"], attrs["qualifier"] = bool(qual & 0x80), qual >> 2 & 0x1F
        elif base in (48, 49, 50):  # QOS: S/E bit 7, QL bits 0-6
            attrs["select"], attrs["qualifier"] = bool(qual & 0x80), qual & 0x7F
        elif typeid >= 110:  # QPM of a parameter
            attrs["qualifier"] = qual
        return tuple(values)
