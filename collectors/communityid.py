"""Community ID v1 flow hashing (https://github.com/corelight/community-id-spec).

Hand-written because it runs once per emitted flow on the hot path; tests check it against the
``communityid`` reference package and tshark's ``communityid`` field.
"""

from __future__ import annotations

import base64
import hashlib
import struct

ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {
    128: 129,
    129: 128,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    130: 131,
    131: 130,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}
ICMP4_REQUESTS = frozenset({8, 13, 15, 10, 17})
ICMP6_REQUESTS = frozenset({128, 133, 135, 130, 139, 144})
_PORTED = frozenset({6, 17, 132})
_HH = struct.Struct("!HH")


def icmp_pairs(proto: int) -> dict[int, int] | None:
    return ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS if proto == 58 else None


def community_id(
    saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, seed: int = 0
) -> str:
    """Community ID v1 of a flow; ``saddr``/``daddr`` are 4 or 16 packed bytes.

    For ICMP/ICMPv6 pass the ICMP type as ``sport`` and the code as ``dport`` (or, as the flow
    table does, the counterpart type for request/reply pairs: both give the same hash).
    """
    one_way = False
    pairs = icmp_pairs(proto)
    if pairs is not None:
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    if not one_way and (saddr > daddr or (saddr == daddr and sport > dport)):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H", seed) + saddr + daddr + bytes((proto, 0))
    if proto in _PORTED or pairs is not None:
        data += _HH.pack(sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
