"""A key as a request gives it (text in a path or a query string), read in the store's terms.

A string-keyed input topic (its key serde ``String``) takes the text as it is. Any other key
serde (JSON, Avro, ...) takes JSON text, e.g. ``42`` or ``{"user": 7}``, and text that is not
JSON as a string (``k1``), so ``"42"`` (quoted) is the string and ``42`` the number.
``key_format=text`` or ``json`` says which, whatever the serde. The value is then encoded by
the key serdes (the topic's for the partition, the store's for the lookup); one they can't
encode is a 400 naming the store and the serde.
"""

from __future__ import annotations

from typing import Any

import orjson

from eokafka.runtime.query.refusal import QueryError
from eokafka.serdes import Serde, String

KEY_FORMATS = ("text", "json")


def read_key(text: str, serde: Serde, store: str, key_format: str | None = None) -> Any:
    """The key ``text`` stands for, by ``key_format`` or else by the topic's key ``serde``."""
    if key_format is not None and key_format not in KEY_FORMATS:
        raise QueryError(
            400, f"key_format={key_format!r}: choose {' or '.join(KEY_FORMATS)}"
        )  # fmt: skip
    if key_format == "text" or key_format is None and isinstance(serde, String):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if key_format == "json":
            raise QueryError(
                400, f"store {store!r}: key {text!r} is not JSON text (key_format=json): {exc}"
            ) from None
        return text


def encode_key(value: Any, serde: Serde, store: str) -> bytes:
    """``value``'s bytes by ``serde``; a value it refuses is the request's error."""
    try:
        data = serde.serialize(value)
    except Exception as exc:  # each serde has its own errors: all of them are the key's
        raise QueryError(
            400, f"store {store!r}: key {value!r} cannot be encoded by its key serde "
            f"{serde.name}: {exc} (give a key as JSON text, e.g. 42 or {{\"id\": 7}}, with "
            "key_format=json, or as plain text with key_format=text)",
        ) from None  # fmt: skip
    if data is None:
        raise QueryError(400, f"store {store!r}: key {value!r} encodes to nothing ({serde.name})")
    return data
