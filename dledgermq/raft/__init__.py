"""The pure Raft core (DESIGN.md §5 rule 1): no clock, threads, I/O, pykka or asyncio.

Arrives with the Raft-groups issue; the store already carries term and index per record.
"""
