"""Where the Java producer puts a keyed record: an independent reference for the tests.

A line-by-line transcription of Kafka's ``Utils.murmur2`` and of the default partitioner's
``Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions``, in Java's signed 32-bit int
arithmetic (``>>>`` is an unsigned shift). The tests check it against the vectors of Kafka's
own ``UtilsTest.testMurmur2``, and check eokafka (the in-memory cluster, the real producers)
against it, never against eokafka's own hash.
"""

from __future__ import annotations


def _int(x: int) -> int:
    """Java's int overflow: keep the low 32 bits, signed."""
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x & 0x80000000 else x


def _ushr(x: int, n: int) -> int:
    """Java's ``x >>> n`` on an int."""
    return _int((x & 0xFFFFFFFF) >> n)


def java_murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2(byte[])``: a signed int, as Java returns it."""
    length = len(data)
    seed = _int(0x9747B28C)
    m = 0x5BD1E995
    r = 24
    h = _int(seed ^ length)
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = (data[i4] & 0xFF) + ((data[i4 + 1] & 0xFF) << 8)
        k += ((data[i4 + 2] & 0xFF) << 16) + ((data[i4 + 3] & 0xFF) << 24)
        k = _int(k)
        k = _int(k * m)
        k ^= _ushr(k, r)
        k = _int(k * m)
        h = _int(h * m)
        h ^= k
    rest = length % 4
    base = length & ~3
    if rest == 3:
        h ^= _int((data[base + 2] & 0xFF) << 16)
    if rest >= 2:
        h ^= _int((data[base + 1] & 0xFF) << 8)
    if rest >= 1:
        h ^= data[base] & 0xFF
        h = _int(h * m)
    h ^= _ushr(h, 13)
    h = _int(h * m)
    h ^= _ushr(h, 15)
    return h


def java_partition(key: bytes, partitions: int) -> int:
    """The Java producer's partition for a non-null key (BuiltInPartitioner)."""
    return (java_murmur2(key) & 0x7FFFFFFF) % partitions
