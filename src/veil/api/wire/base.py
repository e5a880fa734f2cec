"""The base of every wire model: camelCase on the wire, snake_case in Python; and the JSON types of input
fields, which take what their JSON Schema says and nothing pydantic would coerce (`true` is not 1.0, `0` is not
false, a number is not a date-time)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict, StrictBool, StrictInt
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


def _date_time_text(value: object) -> object:
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError("a date-time is an ISO 8601 string")
    return value


JsonFloat = Annotated[float, Strict()]  # a JSON number (an integer too), never true/false or "1.5"
JsonInt = StrictInt
JsonBool = StrictBool
JsonDateTime = Annotated[datetime, BeforeValidator(_date_time_text)]
