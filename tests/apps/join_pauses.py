"""A ``peek`` for the join test apps: stop mid-transaction at the values named in
``TEST_JOIN_PAUSES`` (pause n at the n-th), as tests/apps/eos_copy.py does at ids."""

from __future__ import annotations

import os
from typing import Any

from tests.apps.eos_copy import _pause_once

PAUSE = {v: n for n, v in enumerate(os.environ.get("TEST_JOIN_PAUSES", "").split(",")) if v}


def pause(key: Any, value: Any) -> None:
    if value in PAUSE:
        _pause_once(PAUSE[value])
