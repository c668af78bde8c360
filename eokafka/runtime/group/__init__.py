"""Group membership: what the worker does when the consumer group moves partitions.

- ``rebalance``: the assign / revoke / lost callbacks (commit before partitions leave, abort
  when they are lost, read committed offsets of what arrives); task states change in the
  task manager, the work they call for is the loop's;
- ``members``: whether another member holds this worker's instance id (a successor, after a
  fence), and which consumer error events end the worker;
- ``placement``: the plan of standby replicas every worker computes alike;
- ``leave`` / ``wire``: a static member stopped on purpose leaves its group at once.
"""
