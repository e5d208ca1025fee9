"""The policy's pure parts: windows, word matching, telling numbers apart, the relay syntax."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.policy.agents import COMMAND, distinguish
from workers.policy.config import fold
from workers.policy.state import DAY, ContactRecord, window_of


def test_the_window_runs_24_hours_less_the_margin_from_the_message() -> None:
    window = window_of(1_000_000.0, 1_000_000.0 + DAY - 301, 300)
    assert window.open and window.known
    assert window.until == datetime.fromtimestamp(1_000_000 + DAY - 300, UTC)
    assert not window_of(1_000_000.0, 1_000_000.0 + DAY - 300, 300).open


def test_no_message_means_an_unknown_closed_window() -> None:
    window = window_of(None, 0.0, 300)
    assert (window.open, window.until, window.known) == (False, None, False)


def test_words_compare_folded_with_spaces_collapsed() -> None:
    assert fold("  Stop   ALL\n") == "stop all"
    assert fold("ARRÊT") == "arrêt"


def test_a_handover_lapses_after_its_idle_end() -> None:
    record = ContactRecord("1", handover=True, handover_until=100.0)
    assert record.handover_active(99.0) and not record.handover_lapsed(99.0)
    assert not record.handover_active(100.0) and record.handover_lapsed(100.0)


def test_ambiguous_numbers_are_shown_with_enough_digits_to_tell_them_apart() -> None:
    assert distinguish(["919876543210", "919876003210"], "3210") == [
        "+*******43210",
        "+*******03210",
    ]
    assert distinguish(["919876543210", "447700543210"], "3210") == [
        "+*****6543210",
        "+*****0543210",
    ]


def test_the_relay_syntax() -> None:
    match = COMMAND.match("#3210 It ships\ntoday.")
    assert match is not None and match.groups() == ("3210", "It ships\ntoday.")
    assert COMMAND.match("#3 too short") is None
    assert COMMAND.match("#done") is None
    assert COMMAND.match("order #3210") is None
