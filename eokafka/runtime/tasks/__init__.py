"""Tasks: the unit of work, and the state each owns.

- ``task``: one partition index of co-partitioned inputs with everything of it on this
  worker (inputs and offsets, open stores and checkpoints, restores, poison marks, bounded
  holds) and its lifecycle;
- ``manager``: the tasks of a worker: which task an input belongs to, moves through
  rebalances, restore steps, and the tasks' side of every commit (a commit participant);
- ``process``: a task's run of records through the topology, the hot path;
- ``store_loader``, ``changelog_reader``, ``changelog_topics``: where stores come from, how
  they are brought up to their changelogs (restores and standby tails alike), and the
  changelog topics themselves;
- ``standby``: warm copies of stores of partitions other workers own;
- ``offsets``: the committed offsets read back after a producer re-creation.
"""
