"""Event-time windows: what a window is, which windows a record falls in, when they close.

Pure functions over one key's state; the DSL (``eokafka.dsl.windowed``) keeps that state in a
changelogged window store and emits what these functions return. Nothing here knows Kafka.

By job: ``definition.py`` (what every kind of window answers), ``hopping.py`` (hopping and
tumbling), ``session.py`` (sessions and their merging), ``sliding.py``, ``aggregations.py``
(how values fold into a window's aggregate), ``state.py`` (one key's windows and their bytes
in the store), ``windowed_key.py`` (the windowed key and its wire format).

Conventions (the same as Kafka Streams where it has them):

* Times are epoch milliseconds. A record's timestamp must be >= 0.
* Tumbling and hopping windows are ``[start, end)`` with ``end = start + size``, their starts
  aligned to the epoch. Sliding and session windows are ``[start, end]``, both ends included.
* No window starts before the epoch: a hopping window that would is not one of the record's
  windows (Kafka Streams' ``TimeWindows.windowsFor``), and a sliding record earlier than
  ``size`` has ``[0, size]`` as its left window (Kafka Streams' early-record path).
* Stream time is the largest timestamp seen (per input partition). A window *closes* once
  stream time reaches :meth:`Windows.close_at`: its aggregate is final, and it is removed.
* A record is *late* when a window it belongs to has closed. Late records are applied to no
  window at all, so a window's content is exactly the non-late records that fall in it. (Kafka
  Streams still adds a hopping record to the windows that are open; here the record is whole
  or nowhere, which is what a dead-letter copy needs.)
"""

from __future__ import annotations

from eokafka.windows.aggregations import (
    Aggregator,
    aggregating,
    averaging,
    counting,
    picking,
    reducing,
    summing,
)
from eokafka.windows.definition import Change, Closed, Windows
from eokafka.windows.hopping import Hopping, Tumbling
from eokafka.windows.join import JoinWindows
from eokafka.windows.markers import NO_AGGREGATE, REMOVED
from eokafka.windows.session import Session
from eokafka.windows.sliding import Sliding
from eokafka.windows.state import KeyState, decode_state, encode_state
from eokafka.windows.windowed_key import Windowed, WindowedSerde

__all__ = [
    "NO_AGGREGATE",
    "REMOVED",
    "Aggregator",
    "Change",
    "Closed",
    "Hopping",
    "JoinWindows",
    "KeyState",
    "Session",
    "Sliding",
    "Tumbling",
    "Windowed",
    "WindowedSerde",
    "Windows",
    "aggregating",
    "averaging",
    "counting",
    "decode_state",
    "encode_state",
    "picking",
    "reducing",
    "summing",
]
