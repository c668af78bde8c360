"""The process: the worker loop and what runs it.

- ``worker``: the loop (poll, hand each task its records, commit when due) and start/stop;
- ``wiring``: every part of a worker built in one place, with the commit participants in
  the order the transaction owner calls them;
- ``supervisor``: one worker in this process, or N worker processes;
- ``instance``: stable instance ids (the transactional.id and group.instance.id);
- ``bounded``: runs that stop at the inputs' end, after N records or S seconds;
- ``sources``: the loop of a source-only app;
- ``preflight``: a refused login or unreachable broker is an error before anything starts.
"""
