"""Serdes for bytes, UTF-8 strings and JSON, and the protocol and error every serde shares."""

from __future__ import annotations

import codecs
import enum
import json
import math
import re
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final, Literal, Protocol, runtime_checkable

_orjson: ModuleType | None
try:
    import orjson as _orjson
except ImportError:  # a dependency, but a platform without a wheel still gets the stdlib codec
    _orjson = None

_MAX_REASON: Final = 1000  # fastavro can dump whole schemas into a message; keep logs readable.


class SerdeError(Exception):
    """Raised by a serde for input it can't handle; the runtime adds topic/partition/offset.

    ``serde`` is the serde's ``name`` so handlers (DLQ routing, metrics) can group failures
    without parsing the message.
    """

    serde: str

    def __init__(self, serde: str, message: str) -> None:
        super().__init__(message)
        self.serde = serde

    def __reduce__(self) -> tuple[Any, ...]:
        # The two-argument __init__ would break the default pickling, which replays self.args;
        # errors must survive crossing process boundaries (worker pools, multiprocessing).
        return (type(self), (self.serde, self.args[0]), self.__dict__)


@runtime_checkable
class Serde(Protocol):
    """What the runtime needs from a serde; any object with these members will do."""

    @property
    def name(self) -> str:
        """How error messages and logs refer to the serde."""
        ...

    def serialize(self, value: Any) -> bytes | None: ...

    def deserialize(self, data: bytes | None) -> Any: ...


def _reason(exc: BaseException) -> str:
    """Name the exception too: fastavro's messages (IndexError, EOFError) are often bare."""
    text = str(exc)
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return reason if len(reason) <= _MAX_REASON else reason[:_MAX_REASON] + "..."


def _size(data: object) -> str:
    """Describe the input by size when it is bytes-like, by type when it is not."""
    if isinstance(data, bytes | bytearray | memoryview):
        size = memoryview(data).nbytes
        return "1 byte" if size == 1 else f"{size} bytes"
    return f"a value of type {type(data).__qualname__} (expected bytes)"


# --------------------------------------------------------------------------------------- Bytes


class Bytes:
    """Pass-through serde for payloads the application handles as raw bytes."""

    __slots__ = ()
    name: Final = "Bytes"

    def serialize(self, value: Any) -> bytes | None:
        if value is None or type(value) is bytes:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            # Copy: a mutable buffer could change between produce() and the actual send.
            return bytes(value)
        raise SerdeError(
            self.name,
            f"Bytes cannot serialize a value of type {type(value).__qualname__}: "
            "expected bytes, bytearray or memoryview",
        )

    def deserialize(self, data: bytes | None) -> Any:
        return data

    def __repr__(self) -> str:
        return "Bytes()"


def is_identity(serde: object) -> bool:
    """True if the runtime may skip calling ``serde`` because it returns its input unchanged.

    Exact for ``deserialize``; skipping ``serialize`` also skips its type check, which is fine
    where the runtime already hands the producer bytes. Subclasses that override either method
    are not identities.
    """
    cls = type(serde)
    return (
        isinstance(serde, Bytes)
        and cls.serialize is Bytes.serialize
        and cls.deserialize is Bytes.deserialize
    )


# -------------------------------------------------------------------------------------- String

_str_encode: Final = str.encode  # raises TypeError for non-str, so one call does the type check


class String:
    """Text with a fixed encoding; strict, so bad bytes fail instead of turning into U+FFFD."""

    __slots__ = ("encoding", "name")

    def __init__(self, encoding: str = "utf-8") -> None:
        try:
            canonical = codecs.lookup(encoding).name
            "".encode(encoding)  # rejects bytes-to-bytes codecs such as "base64"
        except LookupError as exc:
            raise ValueError(f"String: unusable text encoding {encoding!r}: {exc}") from exc
        self.encoding = encoding
        self.name = "String" if canonical == "utf-8" else f"String(encoding={encoding})"

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        try:
            return _str_encode(value, self.encoding)
        except TypeError:
            raise SerdeError(
                self.name,
                f"{self.name} cannot serialize a value of type {type(value).__qualname__}: "
                "expected str",
            ) from None
        except UnicodeEncodeError as exc:
            raise SerdeError(
                self.name, f"{self.name} could not encode a {len(value)}-character str: {exc}"
            ) from exc

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            if data.__class__ is bytes:  # the usual key: half the cost of str(data, encoding)
                return data.decode(self.encoding)
            return str(data, self.encoding)
        except (UnicodeDecodeError, TypeError) as exc:
            raise SerdeError(
                self.name, f"{self.name} could not decode {_size(data)}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return "String()" if self.name == "String" else f"String(encoding={self.encoding!r})"


# ---------------------------------------------------------------------------------------- Json


def _json_default(value: Any) -> Any:
    """Teach the stdlib encoder the extra types orjson encodes natively, so backends agree."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"Object of type {type(value).__qualname__} is not JSON serializable")


def _reject_constant(token: str) -> Any:
    """NaN/Infinity are not JSON (RFC 8259); orjson rejects them, so the stdlib must too."""
    raise ValueError(f"{token} is not valid JSON")


_JSON_SCALARS: Final = frozenset({str, int, bool, type(None)})


def _has_non_finite(value: Any) -> bool:
    """True if a NaN/Infinity hides in ``value``; orjson would silently write it as null.

    Exact-type checks come first because this walks every record that encodes a null.
    """
    cls = type(value)
    if cls is dict:
        items: Any = value.values()
    elif cls is list or cls is tuple:
        items = value
    elif cls is float:
        return not math.isfinite(value)
    elif cls in _JSON_SCALARS:
        return False
    elif isinstance(value, float):
        return not math.isfinite(value)
    elif isinstance(value, enum.Enum):
        return _has_non_finite(value.value)
    elif isinstance(value, dict):
        items = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return False
    for item in items:
        if type(item) not in _JSON_SCALARS and _has_non_finite(item):
            return True
    return False


# orjson parses integer literals outside [-2**63, 2**64) as floats, losing precision; those
# literals have 19+ digits. The translate+find pre-filter is a cheap C-level scan that is
# almost always negative; only when it hits do we look at the literals themselves.
_DIGIT_MASK: Final = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_WIDE_INT_DIGITS: Final = 19
_DIGIT_RUN: Final = b"0" * _WIDE_INT_DIGITS
_LONG_INT_LITERAL: Final = re.compile(rb"(?<![\w.+\-])-?\d{19,}(?![\w.])")
_ORJSON_INT_MIN: Final = -(2**63)
_ORJSON_INT_MAX: Final = 2**64 - 1


def _has_wide_int(data: bytes) -> bool:
    """True if ``data`` holds an integer literal that orjson would have turned into a float.

    Only called when the pre-filter found a run of 19+ digits.
    """
    return any(
        not _ORJSON_INT_MIN <= int(literal) <= _ORJSON_INT_MAX
        for literal in _LONG_INT_LITERAL.findall(data)
    )


# Without the passthrough options orjson would encode datetimes and dataclasses that the
# stdlib rejects, and a record would then serialize or fail depending on what is installed.
_ORJSON_DUMPS_OPTIONS: Final = (
    (_orjson.OPT_PASSTHROUGH_DATETIME | _orjson.OPT_PASSTHROUGH_DATACLASS) if _orjson else 0
)


class Json:
    """Compact UTF-8 JSON (RFC 8259), through orjson; the stdlib ``json`` is the fallback.

    orjson is a dependency of eokafka and the default backend (``backend="auto"``), because
    JSON is most of a typical app's per-record cost and orjson is several times faster. The
    stdlib codec is used when orjson cannot be imported, with ``backend="json"``, and for the
    single records where orjson is narrower than the stdlib. Both backends accept and reject
    the same values and give the same Python values and bytes, with these known differences
    in how they get there:

    - non-str dict keys (``{1: "a"}``, also bool, None and float keys): orjson refuses them,
      so such a record is encoded by the stdlib, which writes them as strings (``{"1":"a"}``);
    - NaN and Infinity: not JSON, so rejected on encode and decode by both backends (orjson
      alone would write ``null``, the stdlib alone ``NaN``);
    - ints beyond 64 bits (outside [-2**63, 2**64)): orjson cannot encode them and decodes
      such literals as floats, so those records go through the stdlib and stay exact ints;
    - lone surrogates in input text and float subclasses: handled by the stdlib likewise;
    - a float in exponent form may be spelled differently (``1e-07`` stdlib, ``1e-7``
      orjson); the value read back is the same.

    Enums encode as their value and UUIDs as strings; datetimes and dataclasses are rejected
    on both backends. Parity costs the orjson path two guards: a C-level scan of the input
    for 19+ digit runs on decode, and a NaN walk of the value on encode when the output
    contains ``null``.
    """

    __slots__ = ("backend", "_std_encode", "_std_decode", "_dumps", "_loads")
    name: Final = "Json"

    def __init__(self, *, backend: Literal["auto", "orjson", "json"] = "auto") -> None:
        if backend not in ("auto", "orjson", "json"):
            raise ValueError(f"Json: backend must be 'auto', 'orjson' or 'json', not {backend!r}")
        if backend == "orjson" and _orjson is None:
            raise ImportError("Json(backend='orjson') needs the orjson package")
        use_orjson = _orjson is not None and backend != "json"
        self.backend: str = "orjson" if use_orjson else "json"
        self._std_encode = json.JSONEncoder(
            ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
        ).encode
        self._std_decode = json.JSONDecoder(parse_constant=_reject_constant).decode
        self._dumps: Callable[..., bytes] | None = _orjson.dumps if use_orjson else None
        self._loads: Callable[[Any], Any] | None = _orjson.loads if use_orjson else None

    def serialize(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if value.__class__ is int:  # a count: what both backends write, without the guards
            return b"%d" % value
        dumps = self._dumps
        if dumps is not None:
            try:
                out = dumps(value, option=_ORJSON_DUMPS_OPTIONS)
            except Exception:
                return self._serialize_std(value)  # the stdlib gives the result or the verdict
            # find(), not `in`: bytes.__contains__ first tries the operand as an int.
            if out.find(b"null") >= 0 and _has_non_finite(value):
                return self._serialize_std(value)  # raises: NaN/Infinity are not JSON
            return out
        return self._serialize_std(value)

    def serialize_kept(self, value: Any) -> bytes | None:
        """``serialize`` into an exactly sized object, for bytes a store keeps.

        orjson's output keeps the buffer it was written into (1 to 4 KiB, whatever the
        length): harmless for a record produced and dropped, but a store holding a million
        keys and values would hold gigabytes. Copying costs about 50 ns.
        """
        cls = value.__class__
        if cls is int:
            return b"%d" % value  # exactly sized already
        dumps = self._dumps
        if dumps is None:
            return self.serialize(value)
        if cls is str:  # the usual store key: no NaN can hide in it, so no guard
            try:
                return b"%b" % dumps(value)
            except Exception:
                return self._serialize_std(value)  # e.g. a lone surrogate: the verdict
        out = self.serialize(value)
        return None if out is None else b"%b" % out

    def _serialize_std(self, value: Any) -> bytes:
        try:
            return self._std_encode(value).encode("utf-8")
        except Exception as exc:
            raise SerdeError(
                self.name,
                f"Json could not encode a value of type {type(value).__qualname__}: {exc}",
            ) from exc

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        loads = self._loads
        if loads is not None:
            try:
                value = loads(data)
                exact = (
                    # Too short to hold such a literal: the usual key or count.
                    (data.__class__ is bytes and len(data) < _WIDE_INT_DIGITS)
                    or data.translate(_DIGIT_MASK).find(_DIGIT_RUN) < 0
                    or not _has_wide_int(data)
                )
            except Exception:
                exact = False  # orjson is stricter; the stdlib gives the result or the verdict
            if exact:
                return value
        return self._deserialize_std(data)

    def _deserialize_std(self, data: Any) -> Any:
        try:
            # Decode explicitly: json.loads(bytes) would guess UTF-16/32 and accept a BOM.
            return self._std_decode(str(data, "utf-8"))
        except Exception as exc:
            has_bom = isinstance(data, bytes) and data.startswith(codecs.BOM_UTF8)
            bom = " (the data starts with a UTF-8 BOM)" if has_bom else ""
            raise SerdeError(self.name, f"Json could not decode {_size(data)}: {exc}{bom}") from exc

    def __repr__(self) -> str:
        return f"Json(backend={self.backend!r})"


# ---------------------------------------------------------------------------------------- Avro

