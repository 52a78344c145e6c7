"""Code tables of S7comm (protocol id 0x32) and S7comm-plus (0x72) for :mod:`s7comm`.

Names follow Wireshark's S7comm dissector (packet-s7comm.c) and the S7comm-plus plugin, in
snake case. ``FUNCTIONS`` holds three number ranges that do not overlap:

- 0x00-0xff: job / ack-data parameter function codes;
- 0x04bb-0x05b3: S7comm-plus function codes (events with ``attrs['variant'] = 's7comm-plus'``);
- 0x1000-0x1fff: user-data functions, ``0x1000 | function group << 8 | subfunction`` (the
  0x1000 keeps group 0, mode transition, apart from the job codes): 0x1401 is CPU functions /
  read SZL, 0x1702 time functions / set clock, 0x1501 security / PLC password.
"""

from __future__ import annotations

JOB_FUNCTIONS: dict[int, str] = {
    0x00: "cpu_services",
    0x04: "read_var",
    0x05: "write_var",
    0x1A: "request_download",
    0x1B: "download_block",
    0x1C: "download_ended",
    0x1D: "start_upload",
    0x1E: "upload",
    0x1F: "end_upload",
    0x28: "plc_control",
    0x29: "plc_stop",
    0xF0: "setup_communication",
}

USERDATA_GROUPS: dict[int, str] = {
    0x0: "mode_transition",
    0x1: "programmer_commands",
    0x2: "cyclic_data",
    0x3: "block_functions",
    0x4: "cpu_functions",
    0x5: "security",
    0x6: "pbc_bsend_brecv",
    0x7: "time_functions",
    0xF: "nc_programming",
}

USERDATA_SUBFUNCTIONS: dict[int, dict[int, str]] = {
    0x0: {
        0x00: "stop",
        0x01: "warm_restart",
        0x02: "run",
        0x03: "hot_restart",
        0x04: "hold",
        0x06: "cold_restart",
        0x09: "run_r",
        0x0B: "link_up",
        0x0C: "update",
    },
    0x1: {
        0x01: "request_diag_data_type1",
        0x02: "vartab",
        0x0C: "erase",
        0x0E: "read_diag_data",
        0x0F: "remove_diag_data",
        0x10: "forces",
        0x13: "request_diag_data_type2",
    },
    0x2: {0x01: "memory", 0x04: "unsubscribe", 0x05: "change_driven_memory"},
    0x3: {0x01: "list_blocks", 0x02: "list_blocks_of_type", 0x03: "get_block_info"},
    0x4: {
        0x01: "read_szl",
        0x02: "message_service",
        0x03: "diagnostic_message",
        0x05: "alarm8_indication",
        0x06: "notify_indication",
        0x07: "alarm8_lock",
        0x08: "alarm8_unlock",
        0x09: "scan_indication",
        0x0B: "alarm_ack",
        0x0C: "alarm_ack_indication",
        0x0D: "alarm_lock_indication",
        0x0E: "alarm_unlock_indication",
        0x11: "alarm_sq_indication",
        0x12: "alarm_s_indication",
        0x13: "alarm_query",
        0x16: "notify8_indication",
    },
    0x5: {0x01: "plc_password", 0x02: "clean_session"},
    0x6: {0x01: "bsend_brecv"},
    0x7: {0x01: "read_clock", 0x02: "set_clock", 0x03: "read_clock_following", 0x04: "set_clock_2"},
    0xF: {},
}

PLUS_FUNCTIONS: dict[int, str] = {
    0x04BB: "explore",
    0x04CA: "create_object",
    0x04D4: "delete_object",
    0x04F2: "set_variable",
    0x04FC: "get_variable",
    0x0506: "add_link",
    0x051A: "remove_link",
    0x0524: "get_link",
    0x0542: "set_multi_variables",
    0x054C: "get_multi_variables",
    0x0556: "begin_sequence",
    0x0560: "end_sequence",
    0x056B: "invoke",
    0x057C: "set_var_sub_streamed",
    0x0586: "get_var_sub_streamed",
    0x0590: "get_variables_address",
    0x059A: "abort",
    0x05A9: "error",
    0x05B3: "init_ssl",
}
PLUS_OPCODES = {0x31: "request", 0x32: "response", 0x33: "notification", 0x02: "response2"}

USERDATA_BASE = 0x1000


def _userdata_functions() -> dict[int, str]:
    out: dict[int, str] = {}
    for group, subs in USERDATA_SUBFUNCTIONS.items():
        for sub, name in subs.items():
            out[USERDATA_BASE | group << 8 | sub] = f"{USERDATA_GROUPS[group]}/{name}"
    return out


FUNCTIONS: dict[int, str] = {**JOB_FUNCTIONS, **PLUS_FUNCTIONS, **_userdata_functions()}

ROSCTR = {1: "job", 2: "ack", 3: "ack_data", 7: "userdata"}

AREAS: dict[int, str] = {
    0x03: "SI",  # S7-200 system info
    0x05: "SF",  # S7-200 system flags
    0x06: "AI",  # S7-200 analog inputs
    0x07: "AQ",  # S7-200 analog outputs
    0x1C: "C",  # S7 counters
    0x1D: "T",  # S7 timers
    0x1E: "IEC_C",
    0x1F: "IEC_T",
    0x80: "P",  # direct peripheral access
    0x81: "I",  # inputs
    0x82: "Q",  # outputs
    0x83: "M",  # flags (Merker)
    0x84: "DB",  # data blocks
    0x85: "DI",  # instance data blocks
    0x86: "L",  # local data
    0x87: "V",  # previous local data
}

BLOCK_TYPES = {
    "08": "OB",
    "0A": "DB",
    "0B": "SDB",
    "0C": "FC",
    "0D": "SFC",
    "0E": "FB",
    "0F": "SFB",
}

ERROR_CLASSES = {
    0x00: "no_error",
    0x81: "application_relationship",
    0x82: "object_definition",
    0x83: "no_resources_available",
    0x84: "error_on_service_processing",
    0x85: "error_on_supplies",
    0x87: "access_error",
}

RETURN_CODES = {
    0x00: "reserved",
    0x01: "hardware_fault",
    0x03: "accessing_object_not_allowed",
    0x05: "invalid_address",
    0x06: "data_type_not_supported",
    0x07: "data_type_inconsistent",
    0x0A: "object_does_not_exist",
    0xFF: "success",
}

COTP_TYPES = {
    0xE0: "CR",
    0xD0: "CC",
    0x80: "DR",
    0xC0: "DC",
    0xF0: "DT",
    0x10: "ED",
    0x50: "RJ",
    0x60: "AK",
    0x20: "EA",
    0x70: "ER",
}


ATTRS: dict[str, str] = {
    "variant": "'s7comm' (protocol id 0x32) or 's7comm-plus' (0x72).",
    "rosctr": "S7comm message type: 1 job, 2 ack, 3 ack_data, 7 userdata.",
    "rosctr_name": "Name of the message type.",
    "pdu_ref": "S7comm PDU reference (pairs a job with its ack-data).",
    "error_class": "Ack/ack-data header error class (0x85 error on supplies …).",
    "error_class_name": "Name of the error class.",
    "error_code": "Ack/ack-data header error code.",
    "src_tsap": "Calling TSAP of the COTP connection request (hex).",
    "dst_tsap": "Called TSAP of the COTP connection request (hex; 'SIMATIC-ROOT-ES' …).",
    "pdu_length": "Setup communication: negotiated PDU length.",
    "max_amq_calling": "Setup communication: max parallel jobs of the caller.",
    "max_amq_called": "Setup communication: max parallel jobs of the callee.",
    "item_count": "Read/write var: number of items.",
    "items": "Read/write var request items: list of {area, db, address, bit, count, "
    "transport_size} (syntax_id for non-S7ANY items).",
    "return_codes": "Read/write var ack-data: per-item return codes (0xff = success).",
    "item_errors": "Names of the non-success item return codes.",
    "db_number": "DB number of the first item (area DB/DI).",
    "bit": "Bit address of the first item.",
    "filename": "Block functions: the file name ('_0800001P' = OB 1, passive file system).",
    "block_type": "Block functions: OB, DB, SDB, FC, SFC, FB, SFB.",
    "block_number": "Block functions: block number.",
    "filesystem": "Block functions: 'P' passive (download target), 'A' active, 'B' both.",
    "load_length": "Request download: load memory length of the block.",
    "mc7_length": "Request download: MC7 code length of the block.",
    "upload_id": "Upload: upload id.",
    "block_length": "Start upload ack-data: block length (decimal string sent by the PLC).",
    "more_data": "Upload / download block ack-data: more data follows.",
    "data_length": "Upload / download block ack-data: block data octets in this PDU.",
    "pi_service": "PLC control (0x28) / PLC stop (0x29): PI service name (_INSE, _DELE, "
    "P_PROGRAM, _MODU, _GARB …).",
    "pi_params": "PLC control: PI parameters (block names for _INSE/_DELE, else text).",
    "group": "User data: function group (4 CPU functions, 7 time functions …).",
    "group_name": "User data: name of the function group.",
    "subfunction": "User data: subfunction.",
    "type": "User data: 'request', 'response' or 'push'.",
    "seq": "User data: sequence number.",
    "last_data_unit": "User data: False when more fragments follow.",
    "return_code": "User data: data item return code (0xff success, 0x0a object does not exist).",
    "szl_id": "Read SZL: SZL id.",
    "szl_index": "Read SZL: SZL index.",
    "clock": "Read clock response / set clock request: the PLC time (ISO 8601, local).",
    "plus_version": "S7comm-plus protocol version (1, 2, 3).",
    "plus_opcode": "S7comm-plus opcode (0x31 request, 0x32 response, 0x33 notification).",
    "plus_seq": "S7comm-plus sequence number.",
    "session_id": "S7comm-plus request: session id.",
    "malformed": "What is wrong with a PDU too short or inconsistent for its function.",
}
"""Every ``attrs`` key the S7comm decoder sets."""
