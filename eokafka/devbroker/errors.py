"""The dev broker's one error type."""

from __future__ import annotations


class BrokerError(Exception):
    """A dev-broker failure whose message tells the user what to do next."""
