"""The pure Raft core (DESIGN.md §5 rule 1): no clock, threads, I/O, pykka or asyncio.

Start reading at `core.py` (`RaftCore`: inputs `tick`, `step`, `propose`, `on_persisted`,
`transfer_leadership`; output `ready()`), then `ready.py` for the driver's
persist-before-send contract. The rest, one job each: `types.py` (ids, roles, `Entry`,
`HardState`, `NOOP`), `messages.py`, `config.py`, `log.py` (the in-memory log mirror),
`leader.py` (what only a leader has), `progress.py` (per-follower probe/replicate),
`quorum.py` (majority arithmetic), `driver.py` (the node around the core), `outcomes.py`
(its refusals: NotLeader, Busy; no HTTP status, the broker maps them). The simulator in
`tests/sim/` drives this same code.
"""
