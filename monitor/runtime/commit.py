"""When to commit offsets, and which offsets are still owed to the broker.

Tidemark is at-least-once: an offset is committed only after the events below it
were counted, and counted as committed only once the broker said so. What a
crash (SIGKILL, OOM) counts twice is what was processed since the last confirmed
commit, so the policy commits often (every second by default) and the ledger
makes sure a commit that failed is sent again rather than forgotten.

Both are plain state machines with no Kafka in them (modelled on arroyo's
`commit.py`); the consume loop feeds them and does the talking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Partition = tuple[str, int]  # (topic, partition)


@dataclass(slots=True)
class CommitPolicy:
    """Time-based: commit at most once per `interval` seconds of the loop's clock.

    A failed commit is not retried at once: its offsets stay owed and go out with
    the next tick, so a broker that rejects commits sees one attempt per interval.
    """

    interval: float
    last_commit: float = float("-inf")  # the first turn of the loop commits

    def should_commit(self, now: float) -> bool:
        return now - self.last_commit >= self.interval

    def did_commit(self, now: float) -> None:
        self.last_commit = now


@dataclass(slots=True)
class _Offsets:
    processed: int  # next offset after the last counted event
    confirmed: int  # what the broker has acknowledged (or held when we were assigned)
    in_flight: int | None = None  # sent, no answer yet
    sent_at: float = 0.0


@dataclass(slots=True)
class OffsetLedger:
    """Per owned partition: processed vs in-flight vs confirmed offsets.

    Invariants: nothing is owed below or at `confirmed` (no commit goes
    backwards, e.g. during the read-back below the committed offset), nothing
    beyond `processed` is ever offered, and an offset leaves the ledger's debt
    only when the broker confirmed it. Bounded by the partitions this instance
    owns: `forget` drops a partition on revoke or loss, and results for
    partitions no longer owned are ignored.

    A partition given up with its last commit refused (a rebalance in progress
    rejects commits) is remembered, up to `max_remembered`: should it come back
    to this process, counting resumes after what the process counted itself, and
    that offset is owed to the broker, instead of counting those events again.
    """

    # librdkafka always answers a commit (with an error on timeout); should an answer
    # still never come, the offset is sent again after this long rather than never.
    unanswered_after: float = 30.0
    max_remembered: int = 10_000
    partitions: dict[Partition, _Offsets] = field(default_factory=dict)
    remembered: dict[Partition, int] = field(default_factory=dict)  # oldest first

    def resume_offset(self, tp: Partition, committed: int, high: int) -> int:
        """Where counting resumes on an assignment: the committed offset, or past it.

        Past it only up to what this process counted on the partition before it
        last gave it up, and only if that is still within the partition (a topic
        deleted and created again starts over).
        """
        own = self.remembered.pop(tp, -1)
        return own if committed < own <= high else committed

    def assigned(self, tp: Partition, committed: int, resume: int | None = None) -> None:
        """A new assignment: debt starts at the committed offset, or at `resume` past it."""
        processed = committed if resume is None else max(committed, resume)
        self.partitions[tp] = _Offsets(processed=processed, confirmed=committed)

    def forget(self, tp: Partition) -> None:
        state = self.partitions.pop(tp, None)
        if state is not None and state.processed > state.confirmed:
            self.remembered.pop(tp, None)
            self.remembered[tp] = state.processed
            while len(self.remembered) > self.max_remembered:
                del self.remembered[next(iter(self.remembered))]

    def confirmed(self, tp: Partition) -> int | None:
        state = self.partitions.get(tp)
        return None if state is None else state.confirmed

    def processed(self, positions: Iterable[tuple[str, int, int]]) -> None:
        """Record (topic, partition, next offset) of counted events; never moves back."""
        for topic, partition, offset in positions:
            state = self.partitions.get((topic, partition))
            if state is None:  # a message for a partition we were never told about
                state = self.partitions[(topic, partition)] = _Offsets(-1, -1)
            if offset > state.processed:
                state.processed = offset

    def owed(self, now: float | None = None) -> dict[Partition, int]:
        """Offsets to send now: processed beyond confirmed.

        Given `now` (an asynchronous round), partitions whose exact offset is
        already in flight are left out while their answer may still come. Without
        it (revoke, shutdown: a synchronous round) they are included, since the
        partition must not be given up with a commit still unanswered.
        """
        owed = {}
        for tp, state in self.partitions.items():
            if state.processed <= state.confirmed:
                continue
            if (
                now is not None
                and state.in_flight == state.processed
                and now - state.sent_at < self.unanswered_after
            ):
                continue
            owed[tp] = state.processed
        return owed

    def sent(self, offsets: dict[Partition, int], now: float) -> None:
        for tp, offset in offsets.items():
            state = self.partitions.get(tp)
            if state is not None:
                state.in_flight = offset
                state.sent_at = now

    def settle(self, tp: Partition, offset: int, ok: bool) -> None:
        """The broker's answer for one partition: confirm it, or owe it again."""
        state = self.partitions.get(tp)
        if state is None:  # revoked or lost since: the new owner decides
            return
        if ok:
            state.confirmed = max(state.confirmed, offset)
            if state.in_flight is not None and state.in_flight <= offset:
                state.in_flight = None
        elif state.in_flight == offset:
            # Owed again. A failure of an older offset changes nothing: a later
            # commit is already in flight and answers for itself.
            state.in_flight = None

    def debt(self) -> int:
        """Events processed but not yet confirmed as committed, over all partitions."""
        return sum(max(0, s.processed - s.confirmed) for s in self.partitions.values())
