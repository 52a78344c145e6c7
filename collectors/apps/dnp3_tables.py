"""Code tables of DNP3 (IEEE 1815-2012): application function codes, link functions, IIN
bits, and the object sizes used to step over object data.

Plain data for :mod:`collectors.apps.dnp3`; no decoder is registered here.
"""

from __future__ import annotations

FUNCTIONS: dict[int, str] = {
    0: "confirm",
    1: "read",
    2: "write",
    3: "select",
    4: "operate",
    5: "direct_operate",
    6: "direct_operate_no_ack",
    7: "immediate_freeze",
    8: "immediate_freeze_no_ack",
    9: "freeze_clear",
    10: "freeze_clear_no_ack",
    11: "freeze_at_time",
    12: "freeze_at_time_no_ack",
    13: "cold_restart",
    14: "warm_restart",
    15: "initialize_data",
    16: "initialize_application",
    17: "start_application",
    18: "stop_application",
    19: "save_configuration",
    20: "enable_unsolicited",
    21: "disable_unsolicited",
    22: "assign_class",
    23: "delay_measurement",
    24: "record_current_time",
    25: "open_file",
    26: "close_file",
    27: "delete_file",
    28: "get_file_info",
    29: "authenticate_file",
    30: "abort_file",
    31: "activate_config",
    32: "authenticate_request",
    33: "authenticate_request_no_ack",
    129: "response",
    130: "unsolicited_response",
    131: "authenticate_response",
}

LINK_PRIMARY = {
    0: "reset_link_states",
    2: "test_link_states",
    3: "confirmed_user_data",
    4: "unconfirmed_user_data",
    9: "request_link_status",
}
LINK_SECONDARY = {0: "ack", 1: "nack", 11: "link_status", 15: "not_supported"}
IIN_BITS = (
    "all_stations", "class1_events", "class2_events", "class3_events",
    "need_time", "local_control", "device_trouble", "device_restart",
    "no_func_code_support", "object_unknown", "parameter_error", "event_buffer_overflow",
    "already_executing", "config_corrupt", "reserved2", "reserved1",
)  # fmt: skip
"""IIN1 bits 0-7 then IIN2 bits 0-7."""
IIN2_REFUSAL = 0x17
RESPONSES = (129, 130, 131)

SIZES: dict[int, tuple[int, ...]] = {
    1: (-1, 1), 2: (1, 7, 3), 3: (-2, 1), 4: (1, 7, 3), 10: (-1, 1), 11: (1, 7),
    12: (11, 11, -1), 13: (1, 7), 20: (5, 3, 5, 3, 4, 2, 4, 2),
    21: (5, 3, 5, 3, 11, 9, 11, 9, 4, 2, 4, 2), 22: (5, 3, 5, 3, 11, 9, 11, 9),
    23: (5, 3, 5, 3, 11, 9, 11, 9), 30: (5, 3, 4, 2, 5, 9), 31: (5, 3, 11, 9, 4, 2, 5, 9),
    32: (5, 3, 11, 9, 5, 9, 11, 15), 33: (5, 3, 11, 9, 5, 9, 11, 15), 34: (2, 4, 4),
    40: (5, 3, 5, 9), 41: (5, 3, 5, 9), 42: (5, 3, 11, 9, 5, 9, 11, 15),
    43: (5, 3, 11, 9, 5, 9, 11, 15), 50: (6, 10, 6, 11), 51: (6, 6), 52: (2, 2), 80: (-1,),
}  # fmt: skip
"""Octets per object of (group, variation) = SIZES[group][variation - 1]; -n: packed n-bit
values. Groups 110-113 (octet strings, virtual terminal): the variation is the size."""
NO_DATA = {0, 1, 7, 8, 9, 10, 13, 14, 20, 21, 22, 23, 24}
"""Request function codes whose object headers carry no object data."""
