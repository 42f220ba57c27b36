"""Composition root: builds one broker (or NameServer) process and wires everything.

Order matters and lives only in `broker.py`: open and recover the store (`recovery.py`),
start actors (flusher, reput, HA master, writer, Raft node or HA slave, ticker), then the
asyncio loop with the HTTP API, the peer transport and NameServer registration
(`registrar.py`); on SIGTERM/SIGINT (`process.py`) stop in reverse so the last flush and
checkpoint happen. `namesrv.py` runs a NameServer process.
"""

from dledgermq.node.broker import BrokerHooks, BrokerNode, open_broker, run_broker
from dledgermq.node.namesrv import run_namesrv
from dledgermq.node.registrar import register_once

__all__ = ["BrokerHooks", "BrokerNode", "open_broker", "register_once", "run_broker", "run_namesrv"]
