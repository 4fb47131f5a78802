"""One shape for the same kind of value in every JSON response, whichever record it came from.

The records behind the API are written by many hands (run.json, job hashes, FID and classifier result
files, study records) and keep what their writers keep: times as Unix seconds, epochs as step /
steps-per-epoch, losses and timings at full float precision. The API answers with one convention
(docs/api.md, "Conventions"):
- a time (a field named created, updated, started, finished, time, cancelled, seen or modified, or
  ending in _at) is an ISO-8601 UTC string, e.g. 2026-11-30T12:31:42.123Z;
- a step or count field (step, total, total_steps, steps_per_epoch, attempts, or ending in _step) that
  holds a whole number is an integer: 120, never 120.0;
- every other float keeps SIGNIFICANT_DIGITS significant digits: 0.333333, not 0.3333333333333333.
The records on the volume keep full precision; only the answers are tidied.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi.responses import JSONResponse

TIME_FIELDS = frozenset(
    {"created", "updated", "started", "finished", "time", "cancelled", "seen", "modified"}
)
INTEGER_FIELDS = frozenset({"step", "total", "total_steps", "steps_per_epoch", "attempts"})
SIGNIFICANT_DIGITS = 6
# A number in a time field is Unix seconds only from 2001 on; anything smaller is left alone (it is
# not a time this service wrote, and converting it would invent a date).
EARLIEST_UNIX_S = 1e9


def iso(timestamp: float | None) -> str | None:
    """Unix seconds as ISO-8601 UTC with milliseconds: 2026-11-30T12:31:42.123Z."""
    if timestamp is None:
        return None
    whole = math.floor(timestamp)
    millis = min(999, round((timestamp - whole) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def is_time_field(key: str) -> bool:
    return key in TIME_FIELDS or key.endswith("_at")


def is_integer_field(key: str) -> bool:
    return key in INTEGER_FIELDS or key.endswith("_step")


def round_float(value: float) -> float:
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def tidy(value: Any, key: str = "") -> Any:
    """`value` (a JSON-able document) with times, steps and floats in the API's one shape."""
    if isinstance(value, dict):
        return {k: tidy(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [tidy(item, key) for item in value]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if is_time_field(key) and value >= EARLIEST_UNIX_S:
        return iso(float(value))
    if isinstance(value, float):
        if is_integer_field(key) and value.is_integer():
            return int(value)
        return round_float(value)
    return value


class TidyJSONResponse(JSONResponse):
    """The API's default response class: every JSON answer goes through `tidy` on its way out."""

    def render(self, content: Any) -> bytes:
        return super().render(tidy(content))
