"""The workers: everything of eokafka that talks to Kafka, in four parts by job.

- ``commit``: the transaction owner (the only place that begins, commits, aborts and
  re-creates the producer), its participants, and the record collector (the only place that
  produces);
- ``group``: group membership: the rebalance callbacks, who holds an instance id, where
  standby replicas go, leaving a group;
- ``tasks``: the task (everything of one partition index), the task manager, the processing
  of a task's records, stores, restores, standbys;
- ``process``: the worker loop and its wiring, the supervisor of worker processes, instance
  ids, bounded runs, the source loop.

``clients`` makes every Kafka client (so tests can put in-memory ones under the same code),
``topics`` is the admin view of topics. docs/architecture.md has the invariants the code
cites, the task model and the way a batch travels.
"""
