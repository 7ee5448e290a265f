"""Strict JSON decoding and the one canonical encoding of the wire format.

Python's json module accepts NaN, Infinity, duplicate keys and numbers that
overflow to infinity; the contract refuses all of them, so decoding is wrapped
here. Floats are kept as floats so that the schema can tell `87` from `87.0`.
"""

import json
import math
from typing import Any


class JSONRejected(ValueError):
    """The body is not JSON the contract accepts; the message says why."""


def _refuse_constant(name: str) -> Any:
    raise JSONRejected(f"{name} is not a valid JSON number")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise JSONRejected("a number is too large (it overflows to infinity)")
    return value


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONRejected(f"duplicate key {key[:64]!r} in an object")
            seen.add(key)
    return result


_decoder = json.JSONDecoder(
    object_pairs_hook=_refuse_duplicate_keys,
    parse_float=_parse_float,
    parse_constant=_refuse_constant,
)


def loads(body: bytes) -> Any:
    """Decode a UTF-8 JSON document under the contract's rules."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JSONRejected("the body is not valid UTF-8") from None

    try:
        return _decoder.decode(text)
    except JSONRejected:
        raise
    except RecursionError:
        raise JSONRejected("the body is nested too deeply") from None
    except ValueError as error:
        # JSONDecodeError, and int() refusing a number with too many digits.
        reason = getattr(error, "msg", None) or "a number has too many digits"
        raise JSONRejected(f"the body is not valid JSON: {reason}") from None


def dumps(value: Any) -> str:
    """Encode compactly, keeping non-ASCII text as UTF-8 rather than escapes."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
