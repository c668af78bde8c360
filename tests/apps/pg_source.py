"""Test app: the outbox table ``TEST_PG_TABLE`` into topic ``TEST_OUTPUT``."""

from __future__ import annotations

import os

import eokafka
from connectors.postgres import PostgresSource

app = eokafka.App(os.environ.get("TEST_APP_ID", "pg-source"))
app.source(
    PostgresSource(
        "outbox", os.environ.get("TEST_PG_DSN", ""), os.environ.get("TEST_PG_TABLE", "outbox"),
        key_column="id",
    ),
    os.environ.get("TEST_OUTPUT", "pg-source-out"),
)
