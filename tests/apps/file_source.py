"""Test app: the JSON Lines files of ``TEST_SOURCE_DIR`` into topic ``TEST_OUTPUT``.

``TEST_SOURCE_PATTERN`` (default ``*.jsonl``) chooses the files, e.g. ``**/*.jsonl``.
"""

from __future__ import annotations

import os

import eokafka
from connectors.file_source import FileSource

app = eokafka.App(os.environ.get("TEST_APP_ID", "file-source"))
app.source(
    FileSource(
        "files",
        os.environ.get("TEST_SOURCE_DIR", "in"),
        key_field="id",
        pattern=os.environ.get("TEST_SOURCE_PATTERN") or None,
    ),
    os.environ.get("TEST_OUTPUT", "file-source-out"),
)
