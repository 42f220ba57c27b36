"""`WriterRounds`: when the delay scheduler and the transaction checker may run a round.

Goal: only on the writer, only after dispatching what was written before the takeover,
one round at a time, at most every interval; losing and regaining the writer role sets a
new barrier.
"""

from __future__ import annotations

import pytest

from dledgermq.broker.writer_rounds import WriterRounds

pytestmark = pytest.mark.timeout(10)


def test_rounds_wait_for_the_takeover_barrier_one_at_a_time_and_the_interval() -> None:
    rounds = WriterRounds(interval_ms=100)
    assert not rounds.start(0, writable=False, written=50, dispatched=50)
    assert not rounds.start(0, writable=True, written=80, dispatched=60)  # barrier at 80
    assert not rounds.start(10, writable=True, written=200, dispatched=79)
    assert rounds.start(20, writable=True, written=200, dispatched=80)
    assert not rounds.start(500, writable=True, written=200, dispatched=200)  # busy
    rounds.done()
    assert not rounds.start(119, writable=True, written=200, dispatched=200)  # interval
    assert rounds.start(120, writable=True, written=200, dispatched=200)
    rounds.done()
    # Deposed, then writer again: a new barrier at what is written then.
    assert not rounds.start(300, writable=False, written=300, dispatched=200)
    assert not rounds.start(400, writable=True, written=350, dispatched=340)
    assert rounds.start(410, writable=True, written=360, dispatched=350)
