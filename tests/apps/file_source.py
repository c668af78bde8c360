"""Test app: the JSON Lines files of ``TEST_SOURCE_DIR`` into topic ``TEST_OUTPUT``."""

from __future__ import annotations

import os

import eokafka
from connectors.file_source import FileSource

app = eokafka.App(os.environ.get("TEST_APP_ID", "file-source"))
app.source(
    FileSource("files", os.environ.get("TEST_SOURCE_DIR", "in"), key_field="id"),
    os.environ.get("TEST_OUTPUT", "file-source-out"),
)
