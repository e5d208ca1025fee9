"""The handler author's API is what workers/__init__.py exports: pinned."""

from __future__ import annotations

import workers


def test_public_api_is_pinned() -> None:
    assert sorted(workers.__all__) == sorted(
        [
            "STOP",
            "AsyncContext",
            "AsyncStore",
            "Burst",
            "Contact",
            "Context",
            "Event",
            "HandlerFailed",
            "InboundMessage",
            "Location",
            "Media",
            "MessagingWindow",  # ctx.window (issue 13)
            "OptedOut",  # the conversation policy (issue 13): a send to an opted-out contact
            "Permanent",
            "RetryPolicy",
            "Router",
            "StatusTransition",
            "StatusUpdate",
            "StepTimeout",
            "Store",
            "Superseded",
            "TestEvent",
            "UnknownEvent",
            "Window",  # coalesce=Window(...) (issue 12)
        ]
    )
    for name in workers.__all__:
        assert getattr(workers, name) is not None
