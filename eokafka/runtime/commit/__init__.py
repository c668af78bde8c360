"""The commit: one transaction owner, its participants, and the one place records are produced.

- ``owner``: :class:`TransactionOwner`, the only caller of begin / send offsets / commit /
  abort and of producer re-creation; its docstring numbers the steps of a commit, an abort
  and a re-sync. ``transactional_producer`` holds librdkafka's calls and their retries.
- ``participant``: what anything acting around a commit implements (tasks, sinks, the
  repartition purge, bounded runs, sources, the poison policy).
- ``collector``: :class:`RecordCollector`, the only caller of ``produce()``: outputs,
  changelog records, dead letters, source records; size checks (``limits``), waits for room,
  refusals turned into the poison verdict.
- ``poison_policy``, ``dead_letters``, ``abort_loop``: what becomes of a record that can't be
  processed or sent, and how a transaction that keeps aborting is narrowed to its culprit.
- ``sinks``, ``purge``: participants for writes outside Kafka and for repartition records.
"""
