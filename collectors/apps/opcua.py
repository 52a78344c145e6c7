"""OPC UA binary (UA TCP, port 4840): one event per message (final chunk).

Spec: OPC 10000-6 (Mappings: UA TCP message header, secure conversation headers, binary
encoding of NodeId, String, ExtensionObject …) and OPC 10000-4 (Services).

Events:

- HEL / ACK / ERR / RHE / CLO-less transport messages: ``function_code`` None,
  ``function_name`` = the message type ('HEL' request, 'ACK' response, 'ERR' response with
  ``exception_code`` = the error StatusCode, 'RHE' reverse hello); HEL's endpoint URL in attrs.
- OPN / MSG / CLO: ``function_code`` = numeric id of the service's DefaultBinary encoding
  NodeId (446 OpenSecureChannelRequest, 461 CreateSessionRequest, 631 ReadRequest …),
  ``function_name`` from ``FUNCTIONS``; '…Request' is a request, '…Response' and 397
  ServiceFault are responses; ``match`` = the sequence header's request id.
  ``exception_code`` = a Bad ServiceResult (severity bit set) of the response header (always
  for ServiceFault) or, for WriteResponse, the first Bad result of a write.
- OpenSecureChannel: ``security_policy`` URI (attrs, both directions) and, when the body is
  readable (policy #None), ``security_mode`` ('None' / 'Sign' / 'SignAndEncrypt').
- A body that cannot be read (SignAndEncrypt, or asymmetric encryption of OPN under a policy
  other than #None) gives the event with ``function_code`` None, ``function_name`` the message
  type and ``attrs['encrypted']`` True: a decoder states only what it can see.
- Services with the details rules need: CreateSession (session name, endpoint, client
  application URI), ActivateSession (identity token 'anonymous' / 'username' / 'x509' /
  'issued', user name), Read / Write / Browse / Call (``quantity`` = number of nodes,
  ``data_area`` = first node id, ``attrs['nodes']`` the first 32 node ids; Write ``values`` =
  scalar values written).

Intermediate chunks ('C') are collected and the event is given for the final chunk ('F') with
the service of the first chunk; an abort chunk ('A') gives an event with the abort error as
``exception_code``.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from collectors.apps.base import AppDecoder, DecodeError, Msg, register
from collectors.apps.opcua_codec import Reader, Short, read_datavalue

FUNCTIONS: dict[int, str] = {
    397: "ServiceFault", 410: "TestStackRequest",
    422: "FindServersRequest", 425: "FindServersResponse",
    428: "GetEndpointsRequest", 431: "GetEndpointsResponse",
    437: "RegisterServerRequest", 440: "RegisterServerResponse",
    446: "OpenSecureChannelRequest", 449: "OpenSecureChannelResponse",
    452: "CloseSecureChannelRequest", 455: "CloseSecureChannelResponse",
    461: "CreateSessionRequest", 464: "CreateSessionResponse",
    467: "ActivateSessionRequest", 470: "ActivateSessionResponse",
    473: "CloseSessionRequest", 476: "CloseSessionResponse",
    479: "CancelRequest", 482: "CancelResponse",
    488: "AddNodesRequest", 491: "AddNodesResponse",
    494: "AddReferencesRequest", 497: "AddReferencesResponse",
    500: "DeleteNodesRequest", 503: "DeleteNodesResponse",
    506: "DeleteReferencesRequest", 509: "DeleteReferencesResponse",
    527: "BrowseRequest", 530: "BrowseResponse",
    533: "BrowseNextRequest", 536: "BrowseNextResponse",
    554: "TranslateBrowsePathsToNodeIdsRequest", 557: "TranslateBrowsePathsToNodeIdsResponse",
    560: "RegisterNodesRequest", 563: "RegisterNodesResponse",
    566: "UnregisterNodesRequest", 569: "UnregisterNodesResponse",
    615: "QueryFirstRequest", 618: "QueryFirstResponse",
    621: "QueryNextRequest", 624: "QueryNextResponse",
    631: "ReadRequest", 634: "ReadResponse",
    664: "HistoryReadRequest", 667: "HistoryReadResponse",
    673: "WriteRequest", 676: "WriteResponse",
    700: "HistoryUpdateRequest", 703: "HistoryUpdateResponse",
    712: "CallRequest", 715: "CallResponse",
    751: "CreateMonitoredItemsRequest", 754: "CreateMonitoredItemsResponse",
    763: "ModifyMonitoredItemsRequest", 766: "ModifyMonitoredItemsResponse",
    769: "SetMonitoringModeRequest", 772: "SetMonitoringModeResponse",
    775: "SetTriggeringRequest", 778: "SetTriggeringResponse",
    781: "DeleteMonitoredItemsRequest", 784: "DeleteMonitoredItemsResponse",
    787: "CreateSubscriptionRequest", 790: "CreateSubscriptionResponse",
    793: "ModifySubscriptionRequest", 796: "ModifySubscriptionResponse",
    799: "SetPublishingModeRequest", 802: "SetPublishingModeResponse",
    826: "PublishRequest", 829: "PublishResponse",
    832: "RepublishRequest", 835: "RepublishResponse",
    841: "TransferSubscriptionsRequest", 844: "TransferSubscriptionsResponse",
    847: "DeleteSubscriptionsRequest", 850: "DeleteSubscriptionsResponse",
    12208: "FindServersOnNetworkRequest", 12209: "FindServersOnNetworkResponse",
    12211: "RegisterServer2Request", 12212: "RegisterServer2Response",
}  # fmt: skip

MESSAGE_TYPES = frozenset((b"HEL", b"ACK", b"ERR", b"RHE", b"OPN", b"MSG", b"CLO"))
SECURE = frozenset((b"OPN", b"MSG", b"CLO"))
MODES = {0: "Invalid", 1: "None", 2: "Sign", 3: "SignAndEncrypt"}
TOKENS = {321: "anonymous", 324: "username", 327: "x509", 940: "issued"}
POLICY_NONE = "http://opcfoundation.org/UA/SecurityPolicy#None"
MAX_MESSAGE = 1 << 24
MAX_NODES = 32
_HDR = struct.Struct("<3scI")


def _bad(status: int) -> bool:
    return bool(status & 0x80000000)


@register
class OpcuaDecoder(AppDecoder):
    name = "opcua"
    tcp_ports = (4840,)
    FUNCTIONS: ClassVar[dict[int, str]] = FUNCTIONS
    ATTRS: ClassVar[dict[str, str]] = {
        "message_type": "UA TCP message type: HEL, ACK, ERR, RHE, OPN, MSG or CLO.",
        "chunks": "Number of chunks of a message sent in more than one chunk.",
        "secure_channel_id": "Secure channel id of OPN / MSG / CLO.",
        "request_id": "Sequence header request id (pairs a response with its request).",
        "security_policy": "OpenSecureChannel security policy URI.",
        "security_mode": "OpenSecureChannel MessageSecurityMode: None, Sign, SignAndEncrypt.",
        "request_type": "OpenSecureChannel request type: 'issue' or 'renew'.",
        "encrypted": "True when the body is encrypted and was not decoded.",
        "endpoint_url": "HEL / CreateSession endpoint URL.",
        "status": "Response ServiceResult / ERR error / abort error (StatusCode, int).",
        "reason": "ERR / abort reason text.",
        "session_name": "CreateSession session name.",
        "application_uri": "CreateSession client application URI.",
        "identity_token": "ActivateSession identity token: anonymous, username, x509, issued.",
        "user_name": "ActivateSession user name of a UserNameIdentityToken.",
        "nodes": "Node ids addressed by Read / Write / Browse / Call (first 32).",
        "results": "WriteResponse: StatusCode of each write.",
        "malformed": "What could not be decoded in a message's body.",
    }

    def __init__(self) -> None:
        self._first: dict[tuple[bool, int], tuple[int | None, int]] = {}

    @classmethod
    def probe(cls, data: bytes, from_client: bool) -> bool:
        if len(data) < 8:
            return False
        kind, chunk, size = _HDR.unpack_from(data)
        if kind not in MESSAGE_TYPES or chunk not in b"FCA" or not 8 <= size <= MAX_MESSAGE:
            return False
        if kind in (b"HEL", b"ACK"):
            return chunk == b"F" and size >= 28 and (len(data) == size or len(data) < size)
        return size >= 12

    def parse(self, buf: bytes, from_client: bool) -> tuple[int, list[Msg]]:
        pos, n = 0, len(buf)
        msgs: list[Msg] = []
        while n - pos >= 8:
            kind, chunk, size = _HDR.unpack_from(buf, pos)
            if kind not in MESSAGE_TYPES or chunk not in b"FCA" or size < 8:
                if msgs:
                    break
                raise DecodeError("bad_message_header", f"{buf[pos : pos + 8]!r}")
            if size > MAX_MESSAGE:
                if msgs:
                    break
                raise DecodeError("message_too_large", f"{size} octets")
            if n - pos < size:
                break
            msg = self._message(kind, chunk, buf[pos + 8 : pos + size], from_client)
            if msg is not None:
                msgs.append(msg)
            pos += size
        return pos, msgs

    def _message(self, kind: bytes, chunk: bytes, body: bytes, from_client: bool) -> Msg | None:
        name = kind.decode()
        attrs: dict[str, Any] = {"message_type": name}
        r = Reader(body)
        try:
            if kind not in SECURE:
                return self._transport(name, r, attrs, from_client)
            attrs["secure_channel_id"] = r.u32()
            if kind == b"OPN":
                policy = r.string()
                attrs["security_policy"] = policy
                r.bytestring()
                r.bytestring()
                if policy not in (None, "", POLICY_NONE):
                    attrs["encrypted"] = True
                    return Msg("request" if from_client else "response", None, name, attrs=attrs)
            else:
                r.u32()  # token id
            r.u32()  # sequence number
            req_id = attrs["request_id"] = r.u32()
        except Short:
            attrs["malformed"] = f"truncated {name} header"
            return Msg("request" if from_client else "response", None, name, attrs=attrs)
        return self._secure(name, chunk, r, req_id, attrs, from_client)

    def _transport(self, name: str, r: Reader, attrs: dict[str, Any], from_client: bool) -> Msg:
        if name in ("HEL", "RHE"):
            r.skip(20 if name == "HEL" else 0)
            if name == "RHE":
                r.string()
            attrs["endpoint_url"] = r.string()
            return Msg("request", None, name, attrs=attrs, match=("hello",))
        if name == "ACK":
            return Msg("response", None, name, attrs=attrs, match=("hello",))
        status = attrs["status"] = r.u32()
        attrs["reason"] = r.string()
        return Msg("response", None, name, exception_code=status, attrs=attrs, link=False)

    def _secure(
        self, name: str, chunk: bytes, r: Reader, req_id: int, attrs: dict[str, Any], fc: bool
    ) -> Msg | None:
        key = (fc, req_id)
        first = self._first.pop(key, None)
        if first is not None:
            attrs["chunks"] = first[1] + 1
        direction = "request" if fc else "response"
        if chunk == b"A":
            try:
                status = attrs["status"] = r.u32()
                attrs["reason"] = r.string()
            except Short:
                status = None
            code = first[0] if first else None
            fname = self.fname(code) if code is not None else name
            return Msg(direction, code, fname, exception_code=status, attrs=attrs, match=req_id)
        if first is not None:
            service: int | None = first[0]
        else:
            service = self._service_id(r)
        if chunk == b"C":
            if len(self._first) > 1024:
                self._first.clear()
            self._first[key] = (service, (first[1] if first else 0) + 1)
            return None
        if service is None:
            attrs["encrypted"] = True
            return Msg(direction, None, name, attrs=attrs, match=req_id)
        fname = self.fname(service)
        if fname.endswith("Request"):
            direction = "request"
        elif fname.endswith("Response") or service == 397:
            direction = "response"
        msg = Msg(direction, service, fname, attrs=attrs, match=req_id)
        if first is None:  # a single-chunk message: its body is all here
            try:
                if direction == "request":
                    self._request(service, r, msg)
                else:
                    self._response(service, r, msg)
            except Short:
                attrs["malformed"] = f"truncated {fname}"
        return msg

    @staticmethod
    def _service_id(r: Reader) -> int | None:
        """Numeric id of the body's type NodeId (None when it is no known service: encrypted)."""
        try:
            enc = r.u8()
            if enc == 0:
                ident = r.u8()
            elif enc == 1 and r.u8() == 0:
                ident = r.u16()
            elif enc == 2 and r.u16() == 0:
                ident = r.u32()
            else:
                return None
        except Short:
            return None
        return ident if ident in FUNCTIONS else None

    def _request(self, service: int, r: Reader, msg: Msg) -> None:
        attrs = msg.attrs
        r.nodeid()  # authentication token
        r.skip(16)  # timestamp, request handle, return diagnostics
        r.string()  # audit entry id
        r.u32()  # timeout hint
        r.extension()
        if service == 446:
            r.u32()  # client protocol version
            attrs["request_type"] = {0: "issue", 1: "renew"}.get(kind := r.u32(), str(kind))
            mode = r.u32()
            attrs["security_mode"] = MODES.get(mode, f"unknown-{mode}")
        elif service == 461:
            attrs["application_uri"] = r.string()
            r.string()  # product uri
            r.localized()
            r.u32()  # application type
            r.string()
            r.string()
            r.array(r.string)  # discovery urls
            r.string()  # server uri
            attrs["endpoint_url"] = r.string()
            attrs["session_name"] = r.string()
        elif service == 467:
            r.string()
            r.bytestring()  # client signature
            r.array(lambda: (r.bytestring(), r.bytestring()))  # software certificates
            r.array(r.string)  # locale ids
            type_id = r.nodeid_numeric()
            token = TOKENS.get(type_id or 0)
            attrs["identity_token"] = token or f"unknown-{type_id}"
            if token == "username" and r.u8() & 1:
                r.u32()  # body length
                r.string()  # policy id
                attrs["user_name"] = r.string()
        elif service in (631, 673, 527, 712):
            self._nodes(service, r, msg)

    @staticmethod
    def _nodes(service: int, r: Reader, msg: Msg) -> None:
        if service == 631:
            r.skip(12)  # max age, timestamps to return
        elif service == 527:
            r.nodeid()
            r.skip(12)  # view timestamp, version
            r.u32()  # requested max references per node
        count = r.i32()
        msg.quantity = max(count, 0)
        nodes, values = [], []
        for _ in range(min(max(count, 0), MAX_NODES)):
            nodes.append(r.nodeid())
            if service == 631:
                r.u32()
                r.string()
                r.u16()
                r.string()
            elif service == 673:
                r.u32()
                r.string()
                values.append(read_datavalue(r))
            elif service == 527:
                r.u32()
                r.nodeid()
                r.skip(9)
            elif service == 712:
                nodes[-1] = r.nodeid()  # the method id (object id before it)
                break
        msg.attrs["nodes"] = nodes
        msg.data_area = nodes[0] if nodes else None
        if service == 673:
            msg.values = tuple(values)

    @staticmethod
    def _response(service: int, r: Reader, msg: Msg) -> None:
        r.skip(12)  # timestamp, request handle
        status = msg.attrs["status"] = r.u32()
        if _bad(status) or service == 397:
            msg.exception_code = status
            return
        if service != 676:
            return
        r.diagnostic()
        r.array(r.string)
        r.extension()
        results = r.array(r.u32)
        msg.attrs["results"] = results
        msg.quantity = len(results)
        bad = [s for s in results if _bad(s)]
        if bad:
            msg.exception_code = bad[0]
