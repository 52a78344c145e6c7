"""Well-known ports of the protocols ParkWatch knows, bound like scapy's ``bind_layers``.

Port bindings label a flow's ``app_proto`` until a content decoder confirms it, and tell which
side of a one-way flow is the server. They are this list only — protocol decoders bind their
own ports for decoding (``AppDecoder.tcp_ports``), not here — so a flow record is the same
whether or not the decoders were imported.
"""

from parkwatch.registry import bind_port

for _name, _transport, _port in (
    ("modbus", "tcp", 502),
    ("dnp3", "tcp", 20000),
    ("dnp3", "udp", 20000),
    ("s7comm", "tcp", 102),
    ("iec104", "tcp", 2404),
    ("enip", "tcp", 44818),
    ("enip", "udp", 44818),
    ("enip", "udp", 2222),
    ("opcua", "tcp", 4840),
    ("bacnet", "udp", 47808),
    ("mqtt", "tcp", 1883),
    ("dns", "udp", 53),
    ("dns", "tcp", 53),
    ("http", "tcp", 80),
    ("http", "tcp", 8080),
    ("tls", "tcp", 443),
    ("ssh", "tcp", 22),
    ("ftp", "tcp", 21),
    ("telnet", "tcp", 23),
    ("smb", "tcp", 445),
    ("rdp", "tcp", 3389),
    ("ntp", "udp", 123),
    ("snmp", "udp", 161),
):
    bind_port(_name, _transport, _port)
