"""The release request state machine: the table allows exactly what it lists, to exactly
the parties it names, and never lets an author or project member act as a checker."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from tests.support import REPO
from tre.review.errors import TransitionRefused
from tre.review.states import (
    CHECKER_ACTIONS,
    TERMINAL,
    TRANSITIONS,
    Action,
    Party,
    RequestState,
    allowed_actions,
    can_transition,
    check_transition,
    transitions_markdown,
)

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALL_PARTIES = [frozenset(c) for n in range(5) for c in itertools.combinations(Party, n)]


def test_every_pair_not_in_the_table_is_refused_to_everyone() -> None:
    refused = 0
    for state, action in itertools.product(RequestState, Action):
        if (state, action) in TRANSITIONS:
            continue
        for parties in ALL_PARTIES:
            with pytest.raises(TransitionRefused):
                check_transition(state, action, actor="x", parties=parties, at=AT, reason="because")
            assert not can_transition(
                state, action, actor="x", parties=parties, at=AT, reason="because"
            )
            refused += 1
    # 8 states x 13 actions, minus the 24 rows, for each of the 16 sets of parties.
    assert refused == (len(RequestState) * len(Action) - len(TRANSITIONS)) * 16
    assert len(TRANSITIONS) == 24


def test_every_row_is_allowed_exactly_to_the_parties_it_names() -> None:
    for (state, action), rule in TRANSITIONS.items():
        for parties in ALL_PARTIES:
            # Authors and members never act as checkers, whatever else they are.
            effective = (
                parties - {Party.checker} if parties & {Party.author, Party.member} else parties
            )
            expected = bool(rule.who & effective)
            allowed = can_transition(
                state, action, actor="x", parties=parties, at=AT, reason="because"
            )
            assert allowed is expected, (state, action, sorted(parties))
            if allowed:
                step = check_transition(
                    state, action, actor="x", parties=parties, at=AT, reason="because"
                )
                assert (step.from_state, step.to_state) == (state, rule.to)
                assert (step.actor, step.at, step.reason) == ("x", AT, "because")


def test_terminal_states_are_rejected_released_withdrawn_and_nothing_leaves_them() -> None:
    assert {RequestState.rejected, RequestState.released, RequestState.withdrawn} == TERMINAL
    for state, action in itertools.product(TERMINAL, Action):
        with pytest.raises(TransitionRefused, match="nothing more can happen"):
            check_transition(
                state,
                action,
                actor="alice",
                parties=frozenset(Party),
                at=AT,
                reason="r",
            )


@pytest.mark.security
@pytest.mark.parametrize("other", [Party.author, Party.member])
@pytest.mark.parametrize("action", sorted(CHECKER_ACTIONS))
def test_an_author_or_member_who_is_also_a_checker_cannot_review(
    other: Party, action: Action
) -> None:
    state = next(s for s, a in TRANSITIONS if a is action)
    with pytest.raises(TransitionRefused, match="may not"):
        check_transition(
            state,
            action,
            actor="olivia",
            parties=frozenset({other, Party.checker}),
            at=AT,
            reason="why",
        )
    assert can_transition(
        state, action, actor="olivia", parties=frozenset({Party.checker}), at=AT, reason="why"
    )


def test_checker_actions_are_the_reviewing_ones() -> None:
    assert {Action.start_review, Action.review, Action.return_, Action.reject} == CHECKER_ACTIONS


@pytest.mark.parametrize("action", [Action.return_, Action.reject])
@pytest.mark.parametrize("reason", [None, "", "   \n"])
def test_return_and_reject_need_a_reason(action: Action, reason: str | None) -> None:
    checker = frozenset({Party.checker})
    with pytest.raises(TransitionRefused, match="reason is needed"):
        check_transition(
            RequestState.under_review, action, actor="olivia", parties=checker, at=AT, reason=reason
        )
    step = check_transition(
        RequestState.under_review, action, actor="olivia", parties=checker, at=AT, reason=" n<10 "
    )
    assert step.reason == "n<10"


def test_only_the_system_approves_and_release_needs_approval() -> None:
    everyone_but_system = frozenset({Party.author, Party.checker})
    assert not can_transition(
        RequestState.under_review,
        Action.approve,
        actor="olivia",
        parties=frozenset({Party.checker}),
        at=AT,
    )
    assert not can_transition(
        RequestState.under_review, Action.approve, actor="alice", parties=everyone_but_system, at=AT
    )
    for state in RequestState:
        expected = state is RequestState.approved
        for parties in (frozenset({Party.author}), frozenset({Party.system})):
            assert (
                can_transition(state, Action.release, actor="a", parties=parties, at=AT) is expected
            )


def test_a_changed_file_sends_an_approved_request_back_under_review() -> None:
    rule = TRANSITIONS[(RequestState.approved, Action.add_file)]
    assert rule.to is RequestState.under_review


def test_withdraw_is_the_authors_alone_and_possible_until_release() -> None:
    for state in RequestState:
        expected = state not in TERMINAL
        assert (
            can_transition(
                state, Action.withdraw, actor="alice", parties=frozenset({Party.author}), at=AT
            )
            is expected
        )
        assert not can_transition(
            state, Action.withdraw, actor="bob", parties=frozenset({Party.member}), at=AT
        )


def test_allowed_actions_follow_the_table() -> None:
    assert allowed_actions(RequestState.under_review, frozenset({Party.checker})) == (
        Action.review,
        Action.comment,
        Action.return_,
        Action.reject,
    )
    assert Action.review not in allowed_actions(
        RequestState.under_review, frozenset({Party.author, Party.checker})
    )


def test_the_reference_page_holds_the_table() -> None:
    page = (REPO / "docs" / "reference" / "review-states.md").read_text(encoding="utf-8")
    start, end = "<!-- transitions:start -->\n", "<!-- transitions:end -->"
    assert page.count(start) == 1 and page.count(end) == 1
    table = page.split(start)[1].split(end)[0]
    assert table == transitions_markdown()
    for state in RequestState:
        assert f"| {state} |" in page
