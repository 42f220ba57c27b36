"""`Ready`: everything the core asks its driver to do, as one value (etcd `Ready`).

Owns: the shape of the core's output. Must not: do anything; it is a plain value.

The driver's contract (DESIGN.md §5 rule 2), for each `Ready` in the order `ready()` gave
them:

1. Persist, in this order: cut the durable log at `truncate_from` (if set), append
   `entries_to_persist`, write `hard_state` (if set). Writes of successive Readies must
   become durable in order (a FIFO: the fsync of a later write covers the earlier ones).
2. Send `messages` now (they need nothing durable).
3. When this Ready's writes and every earlier Ready's writes are durable: send
   `messages_after_persist` (vote requests and grants, every AppendEntries response), then
   call `core.on_persisted(term, index)` with the term and index of the last durable entry.
4. Entries up to `commit_index` are committed. On a follower the local copy of a committed
   entry may not be durable yet (it is durable on a majority); a driver that must apply
   only durable entries applies up to `min(commit_index, durable last index)`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dledgermq.raft.messages import Message
from dledgermq.raft.types import Entry, HardState, Index, NodeId, Role, Term


@dataclass(frozen=True, slots=True)
class Ready:
    """What changed since the previous `ready()`; `role`, `term`, `leader_id` and
    `commit_index` are always the current values."""

    entries_to_persist: list[Entry]
    truncate_from: Index | None
    hard_state: HardState | None
    messages: list[Message]
    messages_after_persist: list[Message]
    commit_index: Index
    role: Role
    term: Term
    leader_id: NodeId | None

    @property
    def must_persist(self) -> bool:
        """Whether there is anything to write before `messages_after_persist` may leave."""
        return bool(
            self.entries_to_persist or self.truncate_from is not None or self.hard_state is not None
        )
