"""The hand loop is the benchmarks' floor only while it runs with eokafka's own settings."""

from __future__ import annotations

from benchmarks.passthrough import check_settings_match


def test_hand_loop_uses_exactly_eokafkas_librdkafka_settings() -> None:
    check_settings_match()  # exits naming the settings that differ
