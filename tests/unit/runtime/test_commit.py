"""The commit policy and the offset ledger on their own, with a fake clock."""

from __future__ import annotations

from monitor.runtime.commit import CommitPolicy, OffsetLedger

T, U = ("orders", 0), ("orders", 1)


def test_policy_commits_on_the_first_turn_then_once_per_interval() -> None:
    policy = CommitPolicy(interval=1.0)
    assert policy.should_commit(100.0)
    policy.did_commit(100.0)
    assert not policy.should_commit(100.0)
    assert not policy.should_commit(100.999)
    assert policy.should_commit(101.0)
    policy.did_commit(101.5)  # a commit made for another reason (revoke) restarts the wait
    assert not policy.should_commit(102.0)
    assert policy.should_commit(102.5)


def test_nothing_is_owed_until_events_are_processed_past_the_committed_offset() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 100)
    assert ledger.owed(0.0) == {}
    # Read-back below the committed offset: never committed backwards.
    ledger.processed([("orders", 0, 91)])
    assert ledger.owed(0.0) == {} and ledger.owed() == {}
    ledger.processed([("orders", 0, 105)])
    assert ledger.owed(0.0) == {T: 105}
    assert ledger.debt() == 5


def test_processed_offsets_never_move_back() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 0)
    ledger.processed([("orders", 0, 10)])
    ledger.processed([("orders", 0, 7)])
    assert ledger.owed(0.0) == {T: 10}


def test_an_offset_is_committed_only_once_confirmed() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 0)
    ledger.processed([("orders", 0, 10)])
    ledger.sent({T: 10}, now=0.0)
    assert ledger.confirmed(T) == 0
    assert ledger.owed(0.5) == {}  # in flight: the answer is coming, no second request
    assert ledger.owed() == {T: 10}  # but shutdown or revoke must not leave without it
    ledger.settle(T, 10, ok=True)
    assert ledger.confirmed(T) == 10
    assert ledger.owed(1.0) == {} and ledger.owed() == {}
    assert ledger.debt() == 0


def test_a_failed_commit_is_owed_again() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 0)
    ledger.processed([("orders", 0, 10)])
    ledger.sent({T: 10}, now=0.0)
    ledger.settle(T, 10, ok=False)
    assert ledger.confirmed(T) == 0
    # No new event on the partition, yet the offset goes out again next round.
    assert ledger.owed(1.0) == {T: 10}


def test_failure_of_an_older_commit_does_not_unsettle_a_newer_one() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 0)
    ledger.processed([("orders", 0, 10)])
    ledger.sent({T: 10}, now=0.0)
    ledger.processed([("orders", 0, 20)])
    assert ledger.owed(1.0) == {T: 20}  # newer progress goes out while 10 is in flight
    ledger.sent({T: 20}, now=1.0)
    ledger.settle(T, 10, ok=False)
    assert ledger.owed(1.5) == {}  # 20 is in flight and answers for itself
    ledger.settle(T, 20, ok=True)
    assert ledger.confirmed(T) == 20


def test_a_late_success_never_moves_confirmed_back() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 0)
    ledger.processed([("orders", 0, 20)])
    ledger.sent({T: 20}, now=0.0)
    ledger.settle(T, 20, ok=True)
    ledger.settle(T, 10, ok=True)  # an older request answered last
    assert ledger.confirmed(T) == 20
    assert ledger.owed() == {}


def test_an_unanswered_commit_is_sent_again_after_a_while() -> None:
    ledger = OffsetLedger(unanswered_after=30.0)
    ledger.assigned(T, 0)
    ledger.processed([("orders", 0, 10)])
    ledger.sent({T: 10}, now=0.0)
    assert ledger.owed(29.0) == {}
    assert ledger.owed(30.0) == {T: 10}


def test_partitions_are_independent_and_forgotten_on_revoke() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 0)
    ledger.assigned(U, 50)
    ledger.processed([("orders", 0, 10), ("orders", 1, 60)])
    ledger.sent({T: 10, U: 60}, now=0.0)
    ledger.settle(T, 10, ok=True)
    ledger.settle(U, 60, ok=False)
    assert ledger.owed(1.0) == {U: 60}
    ledger.forget(U)
    ledger.settle(U, 60, ok=True)  # an answer for a partition no longer owned: ignored
    assert ledger.owed() == {}
    assert ledger.confirmed(U) is None
    assert list(ledger.partitions) == [T]


def test_a_partition_given_up_with_its_commit_refused_resumes_after_what_was_counted() -> None:
    ledger = OffsetLedger()
    ledger.assigned(T, 10)
    ledger.processed([("orders", 0, 25)])
    ledger.sent({T: 25}, now=0.0)
    ledger.settle(T, 25, ok=False)  # e.g. REBALANCE_IN_PROGRESS at revoke
    ledger.forget(T)
    assert ledger.remembered == {T: 25}
    # Back to this process: counting resumes at 25, and 25 is owed to the broker.
    resume = ledger.resume_offset(T, committed=10, high=30)
    assert resume == 25 and ledger.remembered == {}
    ledger.assigned(T, 10, resume)
    assert ledger.owed(1.0) == {T: 25}


def test_remembered_offsets_never_skip_what_this_process_did_not_count() -> None:
    ledger = OffsetLedger()
    for committed, high, expected in [
        (40, 50, 40),  # another owner committed further meanwhile
        (10, 20, 10),  # the partition is shorter than that now: recreated topic
    ]:
        ledger.assigned(T, 10)
        ledger.processed([("orders", 0, 25)])
        ledger.forget(T)
        assert ledger.resume_offset(T, committed, high) == expected
    ledger.assigned(T, 10)
    ledger.processed([("orders", 0, 25)])
    ledger.settle(T, 25, ok=True)
    ledger.forget(T)  # confirmed: nothing to remember
    assert ledger.remembered == {}


def test_remembered_partitions_are_bounded() -> None:
    ledger = OffsetLedger(max_remembered=2)
    for p in range(3):
        ledger.assigned(("orders", p), 0)
        ledger.processed([("orders", p, 5)])
        ledger.forget(("orders", p))
    assert list(ledger.remembered) == [("orders", 1), ("orders", 2)]
