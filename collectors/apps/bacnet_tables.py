"""Code tables of BACnet/IP (ANSI/ASHRAE 135): service choices, PDU types, BVLC functions,
network messages, object types, properties and error/reject/abort reasons.

Plain data for :mod:`collectors.apps.bacnet`; no decoder is registered here.
"""

from __future__ import annotations

FUNCTIONS: dict[int, str] = {
    0: "acknowledgeAlarm", 1: "confirmedCOVNotification", 2: "confirmedEventNotification",
    3: "getAlarmSummary", 4: "getEnrollmentSummary", 5: "subscribeCOV", 6: "atomicReadFile",
    7: "atomicWriteFile", 8: "addListElement", 9: "removeListElement", 10: "createObject",
    11: "deleteObject", 12: "readProperty", 13: "readPropertyConditional",
    14: "readPropertyMultiple", 15: "writeProperty", 16: "writePropertyMultiple",
    17: "deviceCommunicationControl", 18: "confirmedPrivateTransfer",
    19: "confirmedTextMessage", 20: "reinitializeDevice", 21: "vtOpen", 22: "vtClose",
    23: "vtData", 24: "authenticate", 25: "requestKey", 26: "readRange",
    27: "lifeSafetyOperation", 28: "subscribeCOVProperty", 29: "getEventInformation",
    30: "subscribeCOVPropertyMultiple", 31: "confirmedCOVNotificationMultiple",
    32: "confirmedAuditNotification", 33: "auditLogQuery",
}  # fmt: skip
"""Confirmed service choices (BACnetConfirmedServiceChoice)."""

UNCONFIRMED: dict[int, str] = {
    0: "i-am", 1: "i-have", 2: "unconfirmedCOVNotification", 3: "unconfirmedEventNotification",
    4: "unconfirmedPrivateTransfer", 5: "unconfirmedTextMessage", 6: "timeSynchronization",
    7: "who-has", 8: "who-is", 9: "utcTimeSynchronization", 10: "writeGroup",
    11: "unconfirmedCOVNotificationMultiple", 12: "unconfirmedAuditNotification",
    13: "who-am-i", 14: "you-are",
}  # fmt: skip
"""Unconfirmed service choices (BACnetUnconfirmedServiceChoice)."""

PDU_TYPES = (
    "confirmed-request", "unconfirmed-request", "simple-ack", "complex-ack", "segment-ack",
    "error", "reject", "abort",
)  # fmt: skip
BVLC = {
    0x00: "bvlc-result", 0x01: "write-broadcast-distribution-table",
    0x02: "read-broadcast-distribution-table", 0x03: "read-broadcast-distribution-table-ack",
    0x04: "forwarded-npdu", 0x05: "register-foreign-device", 0x06: "read-foreign-device-table",
    0x07: "read-foreign-device-table-ack", 0x08: "delete-foreign-device-table-entry",
    0x09: "distribute-broadcast-to-network", 0x0A: "original-unicast-npdu",
    0x0B: "original-broadcast-npdu", 0x0C: "secured-bvll",
}  # fmt: skip
NPDU_AT = {0x04: 10, 0x09: 4, 0x0A: 4, 0x0B: 4}  # BVLC functions carrying an NPDU
NETWORK_MESSAGES = (
    "who-is-router-to-network", "i-am-router-to-network", "i-could-be-router-to-network",
    "reject-message-to-network", "router-busy-to-network", "router-available-to-network",
    "initialize-routing-table", "initialize-routing-table-ack", "establish-connection-to-network",
    "disconnect-connection-to-network", "challenge-request", "security-payload",
    "security-response", "request-key-update", "update-key-set", "update-distribution-key",
    "request-master-key", "set-master-key", "what-is-network-number", "network-number-is",
)  # fmt: skip
OBJECT_TYPES = (
    "analog-input", "analog-output", "analog-value", "binary-input", "binary-output",
    "binary-value", "calendar", "command", "device", "event-enrollment", "file", "group", "loop",
    "multi-state-input", "multi-state-output", "notification-class", "program", "schedule",
    "averaging", "multi-state-value", "trend-log", "life-safety-point", "life-safety-zone",
    "accumulator", "pulse-converter", "event-log", "global-group", "trend-log-multiple",
    "load-control", "structured-view", "access-door", "timer", "access-credential",
    "access-point", "access-rights", "access-user", "access-zone", "credential-data-input",
    "network-security", "bitstring-value", "characterstring-value", "date-pattern-value",
    "date-value", "datetime-pattern-value", "datetime-value", "integer-value",
    "large-analog-value", "octetstring-value", "positive-integer-value", "time-pattern-value",
    "time-value", "notification-forwarder", "alert-enrollment", "channel", "lighting-output",
    "binary-lighting-output", "network-port", "elevator-group", "escalator", "lift", "staging",
    "audit-log", "audit-reporter", "color", "color-temperature",
)  # fmt: skip
PROPERTIES = {
    8: "all", 12: "application-software-version", 28: "description", 36: "event-state",
    44: "firmware-revision", 70: "model-name", 75: "object-identifier", 76: "object-list",
    77: "object-name", 79: "object-type", 81: "out-of-service", 85: "present-value",
    87: "priority-array", 103: "reliability", 104: "relinquish-default", 111: "status-flags",
    112: "system-status", 117: "units", 120: "vendor-identifier", 121: "vendor-name",
}  # fmt: skip
REINIT_STATES = (
    "coldstart", "warmstart", "start-backup", "end-backup", "start-restore", "end-restore",
    "abort-restore", "activate-changes",
)  # fmt: skip
DCC = ("enable", "disable", "disable-initiation")
ERROR_CLASSES = ("device", "object", "property", "resources", "security", "services", "vt",
                 "communication")  # fmt: skip
REJECTS = (
    "other", "buffer-overflow", "inconsistent-parameters", "invalid-parameter-data-type",
    "invalid-tag", "missing-required-parameter", "parameter-out-of-range", "too-many-arguments",
    "undefined-enumeration", "unrecognized-service",
)  # fmt: skip
ABORTS = (
    "other", "buffer-overflow", "invalid-apdu-in-this-state", "preempted-by-higher-priority-task",
    "segmentation-not-supported", "security-error", "insufficient-security",
    "window-size-out-of-range", "application-exceeded-reply-time", "out-of-resources",
    "tsm-timeout", "apdu-too-long",
)  # fmt: skip
OBJECT_SERVICES = frozenset((5, 6, 7, 12, 14, 15, 16, 26, 28))  # first parameter: object id
