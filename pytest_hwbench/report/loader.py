"""The one way a report is read: parsed strictly and validated against the shipped schema.

Every ``hwbench`` command and ``--hw-compare`` read through `load_report`, so a report one tool
refuses, every tool refuses, with the same message. Validation uses a compiled validator
(fastjsonschema): a 10,000-test report validates in a fraction of a second, where an interpreting
one takes seconds. Readers that need no timelines (compare, exports) skip their sample arrays
before parsing, which is most of a big report's bytes.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pytest_hwbench.report.model import READABLE_VERSIONS, Report, ReportError, schema_path

__all__ = ["load_report", "validate_report"]

# A key's array of nothing but numbers (the timelines' columns) is what makes a report big, and
# readers without timelines never look at them: each becomes [] before parsing. Only an array
# right after a key's closing quote and colon is one: inside a JSON string every quote is
# escaped, so a node id's "[1, 2]" is never touched (a key ending in an escaped backslash keeps
# its array: a missed saving, never a wrong parse). Matching every string whole instead, to step
# over them, cost a Python call per string: twice the time, on 3.11, of this scan.
_NUMBER_ARRAYS = re.compile(rb'(?<!\\)("\s*:\s*\[)[-+0-9.eEnul, \t\r\n]*(\])')


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


@functools.cache
def _validator() -> tuple[Callable[[Any], Any], type[Exception]]:
    """The compiled schema, and the exception class it raises.

    Kept together: a test run that reloads modules must not catch another copy's class.
    """
    import fastjsonschema

    with open(schema_path(), encoding="utf-8") as fh:
        schema = json.load(fh)
    validate: Callable[[Any], Any] = fastjsonschema.compile(schema)
    return validate, fastjsonschema.JsonSchemaValueException


def _parse(raw: bytes, source: str) -> Any:
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise ReportError(
            f"{source}: not JSON (not UTF-8: {exc.reason} at byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{source}: not JSON ({exc})") from None
    except ValueError as exc:  # NaN or Infinity: Python writes them, JSON has no such numbers
        raise ReportError(f"{source}: not JSON ({exc})") from None


def validate_report(data: object, source: str = "report") -> Report:
    """`data` as a `Report`, once it is one of this version and valid against the schema."""
    if not isinstance(data, dict) or "schema" not in data:
        raise ReportError(f"{source}: not a pytest-hwbench report (no 'schema' key)")
    if data["schema"] not in READABLE_VERSIONS:
        raise ReportError(
            f"{source}: schema {data['schema']!r} is not supported; this version reads "
            f"{' and '.join(map(repr, READABLE_VERSIONS))}"
        )
    validate, invalid = _validator()
    try:
        validate(data)
    except invalid as exc:
        name, message = str(getattr(exc, "name", "")), str(getattr(exc, "message", exc))
        where = re.sub(r"^data\.?", "", name) or "the report"
        problem = message.removeprefix(name).strip()
        message = f"{source}: not a valid pytest-hwbench report: {where} {problem}"
        raise ReportError(message) from None
    return cast(Report, data)


def load_report(path: str | os.PathLike[str], *, timelines: bool = True) -> Report:
    """Read and validate the report at `path`; `ReportError` says what is wrong and where.

    ``timelines=False`` leaves every timeline's sample arrays empty, for readers that never
    look at them: parsing a big report then takes a fraction of the time.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    data = None
    if not timelines:
        try:
            data = json.loads(_NUMBER_ARRAYS.sub(rb"\1\2", raw), parse_constant=_refuse_constant)
        except ValueError:
            data = None  # parsed again as it is, for an error that points into the file
    if data is None:
        data = _parse(raw, str(path))
    return validate_report(data, str(path))
