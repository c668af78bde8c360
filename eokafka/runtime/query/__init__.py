"""Interactive queries: a worker's committed store state over HTTP (invariant 14).

The HTTP server (server.py) runs in a thread of its own; the stores are the worker loop's
alone. A query goes to the loop through the desk (desk.py), which answers it between two
batches from the stores' committed state (reads.py): never from the open transaction's
overlay, never while the key's task restores or moves. A key whose partition is another
worker's is forwarded to it (owners.py finds it in the consumer group's description).
"""
