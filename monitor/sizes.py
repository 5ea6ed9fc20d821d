"""Sizes in config: a number of bytes or a string such as "512KiB", "1MiB", "2MB"."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"^(\d+)\s*([a-z]*)$")


def parse_size(value: object) -> int:
    """Bytes from an integer or a unit string; ValueError says what is accepted."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a size such as 65536 or '1MiB', got {type(value).__name__}")
    if isinstance(value, int):
        return value
    match = _SIZE.match(value.strip().lower())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(
            f"{value!r} is not a size; use bytes (65536) or units B, KB, KiB, MB, MiB, GB, GiB "
            "such as '512KiB' or '1MiB'"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


ByteSize = Annotated[int, BeforeValidator(parse_size)]
