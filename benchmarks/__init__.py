"""Benchmarks for eokafka; run them from the repository root (see README.md)."""
