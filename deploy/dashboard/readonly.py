"""rq-dashboard, read-only: its pages, none of its buttons (the image's entry point).

rq-dashboard's Delete, Empty, Compact, Cancel and Requeue act on RQ's keys behind the back of
wabahooks' conversation chains: deleting or emptying a contact's head job leaves that
contact's later events deferred for good; an interrupted Compact loses every queue's tail;
Requeue puts an event behind the contact's later ones. So the dashboard we ship answers every
request that could change something with 405 and says what to use instead: POST, PUT, PATCH and
DELETE, and ``GET /requeue/<queue>`` (rq-dashboard's requeue-all also answers GET). It is
rq-dashboard's own command (``rq-dashboard --json …``, every option and RQ_DASHBOARD_*
variable as documented), with its Flask app wrapped in :class:`ReadOnly`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

REFUSAL = (
    b"This dashboard is read-only: rq-dashboard's Delete, Empty, Compact, Cancel and Requeue "
    b"would strand or reorder wabahooks' conversations. Use `wabahooks failed requeue ID` "
    b"(back into its conversation's chain), `wabahooks failed purge`, or "
    b"`wabahooks conversation show`.\n"
)
#: Methods that only read.
READS = frozenset({"GET", "HEAD", "OPTIONS"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ReadOnly:
    """WSGI middleware: passes reads through, refuses anything that writes (405)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", ""))
        if method in READS and "/requeue/" not in path and not path.endswith("/requeue"):
            return self.app(environ, start_response)
        start_response(
            "405 Method Not Allowed",
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(REFUSAL))),
                ("Allow", "GET, HEAD"),
            ],
        )
        return [REFUSAL]


def main() -> None:
    """``rq-dashboard`` itself, its Flask app wrapped in :class:`ReadOnly`."""
    import rq_dashboard.cli as cli

    make_app = cli.make_flask_app

    def read_only_app(*args: Any, **kwargs: Any) -> Any:
        app = make_app(*args, **kwargs)
        app.wsgi_app = ReadOnly(app.wsgi_app)
        return app

    cli.make_flask_app = read_only_app
    cli.main()  # rq-dashboard's entry point: its options, RQ_DASHBOARD_* variables


if __name__ == "__main__":
    main()
