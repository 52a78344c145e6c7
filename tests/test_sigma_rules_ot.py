"""Every rule in rules/ot replayed (flows, ARP and protocol events) over a capture where it must
fire and one where it must not.

Captures: the generated scenarios in replay_pcaps/ (park topology), the shared development set
(skipped when ../shared is absent), variants of generated captures with one host's traffic
removed or its address moved (``without``/``moved``), and small captures crafted with scapy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scapy.packet import Packet

from tests.helpers import SHARED, Session
from tests.rules_harness import (
    PACK,
    PARK,
    REPLAY,
    check_case,
    moved,
    outputs,
    replay,
    rule_id,
    without,
)

# -- capture variants and crafted captures ---------------------------------------------------


def iec104_reset_process() -> list[Packet]:
    """A controlling station sends C_RP_NA_1 (type 105, general reset) to an outstation."""
    s = Session("10.2.1.88", "10.2.2.10", 40400, 2404)
    asdu = bytes([105, 1, 6, 0, 1, 0, 0, 0, 0, 1])  # type, VSQ, COT act, OA, CA=1, IOA 0, QRP 1
    return (
        s.handshake()
        .c2s("PA", bytes.fromhex("680407000000"))
        .s2c("PA", bytes.fromhex("68040b000000"))
        .c2s("PA", bytes([0x68, 4 + len(asdu), 0, 0, 0, 0]) + asdu)
        .s2c("A")
        .pkts
    )


Crafted = Callable[[], list[Packet]]
CASES: list[tuple[str, Any, Any, str]] = [
    # rule name, capture that fires, capture that stays silent, topology: "park", "default",
    # or "park/default" (the firing capture with the park topology, the silent one without)
    (
        "pw_ot_modbus_write_new_master",
        "shared:lemay_modbus/send_a_fake_command_modbus_6RTU_with_operate.pcap",
        "shared:lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",
        "default",
    ),
    ("pw_ot_modbus_write_new_master", "modbus_unauthorized_write", "modbus_benign_polling", "park"),
    (
        "pw_ot_modbus_write_unknown_role",
        "modbus_unauthorized_write",
        "modbus_unauthorized_write",
        "park/default",
    ),
    ("pw_ot_modbus_force_listen_only", "modbus_listen_only", "modbus_benign_polling", "park"),
    (
        "pw_ot_modbus_diagnostics_restart",
        "shared:iti_ics_security_tools/quickdraw/modbus_test_data_part1.pcap",
        "modbus_listen_only",
        "default",
    ),
    (
        "pw_ot_modbus_device_identification",
        "shared:iti_ics_security_tools/quickdraw/modbus_test_data_part1.pcap",
        "shared:lemay_modbus/send_a_fake_command_modbus_6RTU_with_operate.pcap",
        "default",
    ),
    (
        "pw_ot_modbus_function_code_scan",
        "shared:iti_ics_security_tools/quickdraw/modbus_test_data_part2.pcap",
        "shared:lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",
        "default",
    ),
    ("pw_ot_modbus_unit_id_sweep", "modbus_unit_id_sweep", "modbus_benign_polling", "park"),
    (
        "pw_ot_modbus_request_flood",
        "modbus_exception_storm",
        "shared:lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",
        "park_or_default",
    ),
    ("pw_ot_modbus_exception_storm", "modbus_exception_storm", "modbus_unauthorized_write", "park"),
    (
        "pw_ot_modbus_server_polls_devices",
        "shared:lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",
        "shared:iti_ics_security_tools/quickdraw/modbus_test_data_part1.pcap",
        "default",
    ),
    (
        "pw_ot_modbus_across_park_boundary",
        moved("modbus_benign_polling", "10.1.2.20", "198.51.100.20"),
        "modbus_benign_polling",
        "park",
    ),
    (
        "pw_ot_dnp3_across_park_boundary",
        moved("dnp3_benign_polling", "10.2.2.20", "198.51.100.20"),
        "dnp3_benign_polling",
        "park",
    ),
    (
        "pw_ot_s7comm_across_park_boundary",
        moved("s7comm_plc_attacks", "10.1.2.10", "203.0.113.10"),
        "s7comm_plc_attacks",
        "park",
    ),
    (
        "pw_ot_iec104_across_park_boundary",
        moved("iec104_benign", "10.2.2.20", "198.51.100.20"),
        "iec104_benign",
        "park",
    ),
    (
        "pw_ot_enip_across_park_boundary",
        moved("enip_cip_attacks", "10.1.2.20", "198.51.100.20"),
        "enip_cip_attacks",
        "park",
    ),
    ("pw_ot_dnp3_control_new_master", "dnp3_operate_and_write", "dnp3_benign_polling", "park"),
    (
        "pw_ot_dnp3_control_new_master",
        "shared:iti_ics_security_tools/dnp3/direct_operate_crob_malform_but_good_crc.pcap",
        "shared:iti_ics_security_tools/quickdraw/dnp3_test_data_part2.pcap",
        "default",
    ),
    (
        "pw_ot_dnp3_write_new_master",
        "shared:iti_ics_security_tools/dnp3/write_iin_and_response.pcap",
        "shared:iti_ics_security_tools/dnp3/file_write.pcap",
        "default",
    ),
    (
        "pw_ot_dnp3_time_set_new_master",
        "shared:iti_ics_security_tools/quickdraw/dnp3_test_data_part1.pcap",
        "shared:iti_ics_security_tools/dnp3/write_iin_and_response.pcap",
        "default",
    ),
    (
        "pw_ot_dnp3_control_unknown_role",
        "dnp3_operate_and_write",
        "dnp3_operate_and_write",
        "park/default",
    ),
    ("pw_ot_dnp3_restart", "dnp3_restart_and_stop", "dnp3_operate_and_write", "park"),
    (
        "pw_ot_dnp3_restart",
        "shared:iti_ics_security_tools/dnp3/cold_restart_and_response.pcap",
        "shared:iti_ics_security_tools/dnp3/disable_unsolcited_and_response.pcap",
        "default",
    ),
    ("pw_ot_dnp3_stop_application", "dnp3_restart_and_stop", "dnp3_benign_polling", "park"),
    (
        "pw_ot_dnp3_disable_unsolicited",
        "shared:iti_ics_security_tools/dnp3/disable_unsolcited_and_response.pcap",
        "dnp3_operate_and_write",
        "park_or_default",
    ),
    (
        "pw_ot_dnp3_file_operation",
        "shared:iti_ics_security_tools/dnp3/file_delete.pcap",
        "shared:iti_ics_security_tools/dnp3/write_iin_and_response.pcap",
        "default",
    ),
    (
        "pw_ot_dnp3_broadcast_command",
        "shared:iti_ics_security_tools/quickdraw/dnp3_test_data_part1.pcap",
        "dnp3_restart_and_stop",
        "park_or_default",
    ),
    (
        "pw_ot_dnp3_request_flood",
        "shared:suricata_verify/dnp3-flood/input.pcap",
        "dnp3_benign_polling",
        "park_or_default",
    ),
    (
        "pw_ot_dnp3_points_probe",
        "shared:iti_ics_security_tools/quickdraw/dnp3_test_data_part2.pcap",
        "dnp3_restart_and_stop",
        "park_or_default",
    ),
    (
        "pw_ot_s7comm_write_new_master",
        "s7comm_plc_attacks",
        without("s7comm_plc_attacks", "10.1.1.66"),
        "park",
    ),
    (
        "pw_ot_s7comm_write_unknown_role",
        "s7comm_plc_attacks",
        "s7comm_plc_attacks",
        "park/default",
    ),
    (
        "pw_ot_s7comm_plc_stop",
        "s7comm_plc_attacks",
        without("s7comm_plc_attacks", "10.1.1.66"),
        "park",
    ),
    (
        "pw_ot_s7comm_plc_stop",
        "shared:iti_ics_security_tools/s7/snap7_s300_stop.pcapng",
        "shared:iti_ics_security_tools/s7/s7comm_downloading_block_db1.pcap",
        "default",
    ),
    (
        "pw_ot_s7comm_program_download",
        "s7comm_plc_attacks",
        "shared:iti_ics_security_tools/s7/s7comm_reading_setting_plc_time.pcap",
        "park_or_default",
    ),
    (
        "pw_ot_s7comm_program_upload",
        "s7comm_plc_attacks",
        "shared:iti_ics_security_tools/s7/s7comm_downloading_block_db1.pcap",
        "park_or_default",
    ),
    (
        "pw_ot_s7comm_plc_control",
        "shared:iti_ics_security_tools/s7/step7_s300_copyRamToRom.pcapng",
        "s7comm_plc_attacks",
        "park_or_default",
    ),
    (
        "pw_ot_s7comm_set_clock",
        "shared:iti_ics_security_tools/s7/s7comm_reading_setting_plc_time.pcap",
        "s7comm_plc_attacks",
        "park_or_default",
    ),
    (
        "pw_ot_s7comm_plc_password",
        "shared:iti_ics_security_tools/s7/step7_s300_AuthPassword.pcapng",
        "s7comm_plc_attacks",
        "park_or_default",
    ),
    (
        "pw_ot_s7comm_plc_enumeration",
        "shared:iti_ics_security_tools/s7/s7comm_downloading_block_db1.pcap",
        "s7comm_plc_attacks",
        "park_or_default",
    ),
    ("pw_ot_iec104_command_new_master", "iec104_rogue_master", "iec104_benign", "park"),
    (
        "pw_ot_field_device_initiates_session",
        "shared:lemay_modbus/moving_two_files_modbus_6RTU.pcap",
        "shared:lemay_modbus/characterization_modbus_6RTU_with_operate.pcap",
        "default",
    ),
    (
        "pw_ot_iec104_command_new_master",
        "iec104_rogue_master",
        "shared:iti_ics_security_tools/iec104_benign/TestDissectIec104.pcap",
        "park_or_default",
    ),
    ("pw_ot_iec104_reset_process", iec104_reset_process, "iec104_rogue_master", "park"),
    (
        "pw_ot_enip_config_change",
        "shared:iti_ics_security_tools/quickdraw/CL5000EIP-Change_Port_Configuration_Attempt.pcap",
        "enip_cip_attacks",
        "park_or_default",
    ),
    (
        "pw_ot_enip_state_change",
        "enip_cip_attacks",
        "shared:iti_ics_security_tools/quickdraw/CL5000EIP-Change_Date_Attempt.pcap",
        "park_or_default",
    ),
    (
        "pw_ot_enip_vendor_program_service",
        "shared:iti_ics_security_tools/quickdraw/CL5000EIP-Software_Upload.pcap",
        "shared:iti_ics_security_tools/quickdraw/CL5000EIP-Change_Time_Attempt.pcap",
        "default",
    ),
    (
        "pw_ot_enip_write_new_master",
        "enip_cip_attacks",
        "shared:iti_ics_security_tools/quickdraw/CL5000EIP-Change_Date_Attempt.pcap",
        "park_or_default",
    ),
    (
        "pw_ot_enip_list_identity_unicast",
        "shared:suricata_verify/enip-alert/enip_test1.pcap",
        "shared:iti_ics_security_tools/quickdraw/CL5000EIP-IP_Address_Change_Attempt.pcap",
        "default",
    ),
    (
        "pw_ot_enip_list_identity_sweep",
        "enip_cip_attacks",
        "shared:suricata_verify/enip-alert/enip_test1.pcap",
        "park_or_default",
    ),
    (
        "pw_ot_mqtt_wildcard_subscribe",
        "mqtt_wildcard_subscribe",
        without("mqtt_wildcard_subscribe", "10.2.1.66"),
        "park",
    ),
    (
        "pw_ot_opcua_anonymous_into_ot",
        "opcua_unsecured_session",
        without("opcua_unsecured_session", "10.1.1.66"),
        "park",
    ),
    (
        "pw_ot_opcua_unsecured_from_outside",
        moved("opcua_unsecured_session", "10.1.1.66", "198.51.100.66"),
        "opcua_unsecured_session",
        "park",
    ),
    (
        "pw_ot_bacnet_device_control",
        "bacnet_rogue_commands",
        without("bacnet_rogue_commands", "10.1.1.66"),
        "park",
    ),
    (
        "pw_ot_bacnet_write_new_master",
        "bacnet_rogue_commands",
        without("bacnet_rogue_commands", "10.1.1.66"),
        "park",
    ),
    ("pw_ot_malformed_frames", "modbus_malformed_frames", "modbus_benign_polling", "park"),
    (  # QuickDraw: four bad MBAP frames in 44 s; the IEC 104 sample: 16 bad APCI in 10 minutes
        "pw_ot_malformed_frames",
        "shared:iti_ics_security_tools/quickdraw/modbus_test_data_part1.pcap",
        "shared:iti_ics_security_tools/iec104_benign/TestDissectIec104.pcap",
        "default",
    ),
]


@pytest.mark.parametrize(
    ("name", "fires", "silent", "topo"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fires_and_stays_silent(
    name: str, fires: Any, silent: Any, topo: str, tmp_path: Path
) -> None:
    check_case(name, fires, silent, topo, tmp_path)


def test_every_rule_is_tested() -> None:
    """Each standalone rule and each correlation of rules/ot has a fire/silent case above."""
    out = outputs("ot")
    assert out, "no rules found in rules/ot"
    assert out - {c[0] for c in CASES} == set()
    assert len(PACK) >= 40


def test_new_master_rule_names_the_rogue_not_the_master() -> None:
    """lemay: the legitimate master 192.168.1.100 writes too; only 192.168.1.101 is flagged."""
    path = SHARED / "lemay_modbus/send_a_fake_command_modbus_6RTU_with_operate.pcap"
    if not path.exists():
        pytest.skip("shared capture absent")
    alerts = [a for a in replay(path, None) if a.category == "ot_unauthorized_write"]
    assert {a.attackers for a in alerts} == {("192.168.1.101",)}
    assert {t for a in alerts for t in a.targets} == {"192.168.1.102"}


def test_malformed_frames_rule_names_the_sender_and_the_device() -> None:
    """The weirds carry the flow: the rogue host is the attacker, PLC 2 the target."""
    alerts = [
        a
        for a in replay(REPLAY / "modbus_malformed_frames.pcap", PARK)
        if a.rule_id == rule_id("pw_ot_malformed_frames")
    ]
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.attackers, a.targets, a.category) == (("10.1.1.77",), ("10.1.2.11",), "dos")
    assert a.flow_uids and a.evidence["count"] == 4 and a.enterprises == ("ent-a",)
