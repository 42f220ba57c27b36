"""What makes a broker group: how one node's CommitLog becomes a replica of the group's log.

Two tiers (pyproject.toml's import-linter contracts hold them apart):

- the pure rules, below the actors (no threads, clock, pykka, asyncio or aiohttp; the
  actors and the API import them):
  - `peer_codec.py`: Raft messages <-> plain dicts for the peer transport;
  - `master_slave.py`: classic master/slave streaming (frames, chunks, sync waiters);
  - `repair.py`: taking a peer's copy of a damaged record (frames, checks, the book);
- the composition, above the actors (they build and wire actors, the transport, the log):
  - `raft_log.py`: the CommitLog as the Raft log (`CommitLogRaftLog`, the driver's
    `DriverIO`; runs on the Raft node's thread, tells the writer and the ReputActor);
  - `raft_member.py`: one node of a Raft group (RaftNodeActor, transport, role);
  - `master_slave_member.py`: one node of a master/slave group (HA master or slave actor);
  - `startup_repair.py`: fetch a peer's copy of a damaged record before anything starts.
"""
