"""Name tables of EtherNet/IP and CIP (ODVA *The CIP Networks Library*, Vol. 1 and Vol. 2).

Plain data for :mod:`collectors.apps.enip`; no decoder is registered here.
"""

from __future__ import annotations

COMMANDS: dict[int, str] = {
    0x0000: "nop",
    0x0001: "list_targets",  # reserved for legacy use (pre-standard Rockwell tools)
    0x0004: "list_services",
    0x0063: "list_identity",
    0x0064: "list_interfaces",
    0x0065: "register_session",
    0x0066: "unregister_session",
    0x006F: "send_rr_data",
    0x0070: "send_unit_data",
    0x0072: "indicate_status",
    0x0073: "cancel",
    0x00C8: "start_dtls",
}
"""Encapsulation commands."""

ENCAP_STATUS: dict[int, str] = {
    0x0000: "success",
    0x0001: "invalid_command",
    0x0002: "insufficient_memory",
    0x0003: "incorrect_data",
    0x0064: "invalid_session_handle",
    0x0065: "invalid_length",
    0x0069: "unsupported_protocol_version",
    0x006A: "encapsulated_cip_service_not_allowed_on_this_port",
}

SERVICES: dict[int, str] = {
    0x01: "get_attributes_all",
    0x02: "set_attributes_all",
    0x03: "get_attribute_list",
    0x04: "set_attribute_list",
    0x05: "reset",
    0x06: "start",
    0x07: "stop",
    0x08: "create",
    0x09: "delete",
    0x0A: "multiple_service_packet",
    0x0D: "apply_attributes",
    0x0E: "get_attribute_single",
    0x10: "set_attribute_single",
    0x11: "find_next_object_instance",
    0x14: "error_response",
    0x15: "restore",
    0x16: "save",
    0x17: "nop",
    0x18: "get_member",
    0x19: "set_member",
    0x1A: "insert_member",
    0x1B: "remove_member",
    0x1C: "group_sync",
    0x1D: "get_connection_point_member_list",
}
"""Common services (codes 0x00-0x31 are common to every class; 0x32-0x4A reserved)."""

OBJECT_SERVICES: dict[tuple[int, int], str] = {
    (0x06, 0x4E): "forward_close",
    (0x06, 0x52): "unconnected_send",
    (0x06, 0x54): "forward_open",
    (0x06, 0x56): "get_connection_data",
    (0x06, 0x57): "search_connection_data",
    (0x06, 0x5A): "get_connection_owner",
    (0x06, 0x5B): "large_forward_open",
    (0x37, 0x4B): "initiate_upload",
    (0x37, 0x4C): "initiate_download",
    (0x37, 0x4D): "initiate_partial_read",
    (0x37, 0x4E): "initiate_partial_write",
    (0x37, 0x4F): "upload_transfer",
    (0x37, 0x50): "download_transfer",
    (0x37, 0x51): "clear_file",
    (0x67, 0x4B): "execute_pccc",
    (0x6B, 0x55): "get_instance_attribute_list",  # Logix symbol object
    (0x6C, 0x4C): "read_template",  # Logix template object
}
"""Object-specific services (0x4B-0x63) of the classes whose meaning is published."""

TAG_SERVICES: dict[int, str] = {
    0x4C: "read_tag",
    0x4D: "write_tag",
    0x4E: "read_modify_write_tag",
    0x52: "read_tag_fragmented",
    0x53: "write_tag_fragmented",
}
"""Logix services addressed to a symbolic (tag name) path (Rockwell 1756-PM020)."""

GENERAL_STATUS: dict[int, str] = {
    0x00: "success", 0x01: "connection_failure", 0x02: "resource_unavailable",
    0x03: "invalid_parameter_value", 0x04: "path_segment_error",
    0x05: "path_destination_unknown", 0x06: "partial_transfer", 0x07: "connection_lost",
    0x08: "service_not_supported", 0x09: "invalid_attribute_value",
    0x0A: "attribute_list_error", 0x0B: "already_in_requested_mode",
    0x0C: "object_state_conflict", 0x0D: "object_already_exists",
    0x0E: "attribute_not_settable", 0x0F: "privilege_violation",
    0x10: "device_state_conflict", 0x11: "reply_data_too_large",
    0x12: "fragmentation_of_a_primitive_value", 0x13: "not_enough_data",
    0x14: "attribute_not_supported", 0x15: "too_much_data", 0x16: "object_does_not_exist",
    0x17: "service_fragmentation_sequence_not_in_progress", 0x18: "no_stored_attribute_data",
    0x19: "store_operation_failure", 0x1A: "routing_failure_request_too_large",
    0x1B: "routing_failure_response_too_large", 0x1C: "missing_attribute_list_entry_data",
    0x1D: "invalid_attribute_value_list", 0x1E: "embedded_service_error",
    0x1F: "vendor_specific_error", 0x20: "invalid_parameter",
    0x21: "write_once_value_already_written", 0x22: "invalid_reply_received",
    0x23: "buffer_overflow", 0x24: "invalid_message_format", 0x25: "key_failure_in_path",
    0x26: "path_size_invalid", 0x27: "unexpected_attribute_in_list",
    0x28: "invalid_member_id", 0x29: "member_not_settable",
    0x2A: "group_2_only_server_general_failure", 0x2B: "unknown_modbus_error",
    0x2C: "attribute_not_gettable",
}  # fmt: skip

CLASSES: dict[int, str] = {
    0x01: "identity", 0x02: "message_router", 0x03: "devicenet", 0x04: "assembly",
    0x05: "connection", 0x06: "connection_manager", 0x07: "register",
    0x08: "discrete_input_point", 0x09: "discrete_output_point", 0x0A: "analog_input_point",
    0x0B: "analog_output_point", 0x0F: "parameter", 0x10: "parameter_group", 0x37: "file",
    0x43: "time_sync", 0x44: "modbus", 0x47: "dlr", 0x48: "qos", 0x5D: "cip_security",
    0x5E: "ethernet_ip_security", 0x5F: "certificate_management", 0x67: "pccc",
    0x6B: "symbol", 0x6C: "template", 0xF0: "controlnet", 0xF4: "port",
    0xF5: "tcp_ip_interface", 0xF6: "ethernet_link",
}  # fmt: skip

VENDORS: dict[int, str] = {1: "Rockwell Automation/Allen-Bradley"}
"""Vendor ids named in ListIdentity attrs (others are given by number only)."""

CPF_ITEMS: dict[int, str] = {
    0x0000: "null_address",
    0x000C: "list_identity",
    0x00A1: "connected_address",
    0x00B1: "connected_data",
    0x00B2: "unconnected_data",
    0x0100: "list_services",
    0x8000: "sockaddr_o_t",
    0x8001: "sockaddr_t_o",
    0x8002: "sequenced_address",
}
