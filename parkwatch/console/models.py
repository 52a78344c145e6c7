"""API models of the records, generated from the schema dataclasses (``parkwatch.schema``).

Each record type becomes a pydantic model of its JSON form: the same fields with the same
one-line docs as descriptions, timestamps as RFC 3339 text, ``schema`` fixed to the record's
schema id, no other keys. So the OpenAPI schema documents every field an enterprise platform
receives, FastAPI checks every answer against it, and a schema change shows in the API without
editing this module.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import JsonDict

from parkwatch.schema import Alert, ArpEvent, Incident, OtEvent, Record, Weird


def record_model(cls: type[Record]) -> type[BaseModel]:
    """The pydantic model of ``cls``'s JSON form (``Record.to_dict``)."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        "schema_id": (Literal[cls.schema_id()], Field(  # "schema" is a BaseModel attribute
            alias="schema", description="Schema id and major version.")),
    }
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        kind: Any = hints[f.name]
        if f.metadata.get("ts"):
            kind = str | None if type(None) in typing.get_args(kind) else str
        extra: JsonDict | None = {"format": "date-time"} if f.metadata.get("ts") else None
        # required: the JSON form always carries every field (null where the value is None)
        fields[f.name] = (kind, Field(description=f.metadata.get("doc", ""),
                                      json_schema_extra=extra))
    doc = (cls.__doc__ or cls.__name__).strip().splitlines()[0]
    model: type[BaseModel] = create_model(
        cls.__name__ + "Record", __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields
    )
    return model


IncidentRecord = record_model(Incident)
AlertRecord = record_model(Alert)
OtEventRecord = record_model(OtEvent)
ArpRecord = record_model(ArpEvent)
WeirdRecord = record_model(Weird)
EventRecord = Annotated[
    OtEventRecord | ArpRecord | WeirdRecord,  # type: ignore[valid-type]
    Field(discriminator="schema_id"),
]
