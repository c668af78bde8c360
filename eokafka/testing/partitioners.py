"""librdkafka's partitioners, for the in-memory cluster: which partition a record goes to.

eokafka's producers use ``murmur2_random`` (``eokafka.client_configs.DEFAULT_PARTITIONER``): a
key is hashed as the Java client hashes it (Kafka's ``Utils.murmur2``, then ``toPositive(hash) %
partitions``). librdkafka's own default, ``consistent_random``, hashes with CRC32. Where
librdkafka picks a random partition (a null key under any partitioner, an empty key under
``consistent_random``, every record under ``random``), the in-memory cluster takes the
partitions in turn, so that a test runs the same way every time.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from eokafka.errors import ConfigError

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (seed 0x9747b28c), as an unsigned 32-bit number."""
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little") * _M & _MASK
        k = (k ^ (k >> 24)) * _M & _MASK
        h = (h * _M & _MASK) ^ k
    if whole < length:
        h = (h ^ int.from_bytes(data[whole:], "little")) * _M & _MASK
    h = (h ^ (h >> 13)) * _M & _MASK
    return h ^ (h >> 15)


def _java(key: bytes) -> int:
    return murmur2(key) & 0x7FFFFFFF  # Utils.toPositive


# partitioner -> (hash of a key, whether an empty key goes to a random partition instead)
_HASHES: dict[str, tuple[Callable[[bytes], int], bool]] = {
    "murmur2": (_java, False),
    "murmur2_random": (_java, False),
    "consistent": (zlib.crc32, False),
    "consistent_random": (zlib.crc32, True),
}
PARTITIONERS = (*_HASHES, "random")


def check(partitioner: str) -> str:
    """Refuse a partitioner the in-memory cluster can't imitate, naming the setting."""
    if partitioner not in PARTITIONERS:
        raise ConfigError(
            f"partitioner={partitioner!r}: the in-memory cluster imitates "
            f"{', '.join(PARTITIONERS)}; give the partition explicitly for another"
        )
    return partitioner


def keyed_partition(partitioner: str, key: bytes | None, count: int) -> int | None:
    """The partition ``partitioner`` picks for ``key``; None where librdkafka picks at random."""
    hashed = _HASHES.get(partitioner)
    if key is None or hashed is None or (hashed[1] and not key):
        return None
    return hashed[0](key) % count
