"""Every documented endpoint (spec §1–4), once: checked arguments in, a :class:`Call` out.

Each function validates its arguments (raising :class:`~service.portal.errors.InvalidRequest`
before anything is sent) and returns the :class:`~service.portal.rules.Call` that either
client runs: ``PortalClient`` blocking, ``AsyncPortalClient`` on the event loop.

What is paced: calls that create a message to a person (``send_text``, and
``create_template``, whose review can end in messages) take a permit from the shared rate.
Mark-read and reads are not paced (a read receipt is not a message, and an unpaced call costs
no Redis round trip), but every call waits out the shared hold-off after a 429.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

import structlog

from service.logs import mask_phone
from service.portal.errors import invalid_request
from service.portal.models import (
    Conversation,
    Message,
    Page,
    SentMessage,
    Template,
    WebhookConfig,
    WebhookTestResult,
)
from service.portal.rules import Call
from service.portal.validation import (
    CONVERSATIONS_MAX_LIMIT,
    MESSAGES_MAX_LIMIT,
    Problem,
    check_category,
    check_components,
    check_limit,
    check_phone,
    check_template,
    check_text,
    check_webhook_events,
)

__all__ = [
    "conversations",
    "create_template",
    "delete_template",
    "delete_webhook",
    "edit_template",
    "found_sent",
    "mark_read",
    "messages",
    "send_text",
    "set_webhook",
    "templates",
    "test_webhook",
    "webhook",
]

log = structlog.get_logger("wabahooks.portal")


def _refuse(call: str, problem: Problem | None) -> None:
    if problem is not None:
        raise invalid_request(call, problem.error, problem.detail, status=None)


def _ignore(_body: Any, _server_time: datetime | None) -> None:
    return None


# -- messages -------------------------------------------------------------------------------


def send_text(to: str, message: str) -> Call[SentMessage]:
    _refuse("send_text", check_phone(to))
    _refuse("send_text", check_text(message))

    def parse(body: Any, _server_time: datetime | None) -> SentMessage:
        sent = SentMessage.from_json(body)
        log.info("portal_sent", to=mask_phone(to), message_id=sent.message_id)
        return sent

    return Call(
        "send_text",
        "POST",
        "messages/text",
        parse,
        body={"to": to, "message": message},
        idempotent=False,
        paced=True,
        contact=to,
    )


def mark_read(message_id: str, show_typing_indicator: bool) -> Call[None]:
    if not isinstance(message_id, str) or not message_id.startswith("wamid."):
        _refuse(
            "mark_read", Problem("Invalid parameter", "messageId must be the inbound wamid.… id")
        )
    body = {"messageId": message_id, "showTypingIndicator": show_typing_indicator}
    return Call("mark_read", "POST", "messages/mark-read", _ignore, body=body)


# -- conversations --------------------------------------------------------------------------


def _params(cursor: str | None, limit: int) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": limit}
    if cursor:
        params["cursor"] = cursor
    return params


def _conversation_page(body: Any, server_time: datetime | None) -> Page[Conversation]:
    return replace(Conversation.page(body), server_time=server_time)


def _message_page(body: Any, server_time: datetime | None) -> Page[Message]:
    return replace(Message.page(body), server_time=server_time)


def conversations(cursor: str | None, limit: int) -> Call[Page[Conversation]]:
    _refuse("conversations", check_limit(limit, CONVERSATIONS_MAX_LIMIT))
    return Call(
        "conversations", "GET", "conversations", _conversation_page, params=_params(cursor, limit)
    )


def messages(phone_number: str, cursor: str | None, limit: int) -> Call[Page[Message]]:
    _refuse("messages", check_phone(phone_number))
    _refuse("messages", check_limit(limit, MESSAGES_MAX_LIMIT))
    path = f"conversations/{phone_number}/messages"
    return Call(
        "messages",
        "GET",
        path,
        _message_page,
        params=_params(cursor, limit),
        route="conversations/{phone_number}/messages",
    )


def found_sent(
    page: Page[Message], message: str, since: datetime, attributed: Collection[str] = ()
) -> tuple[Message | None, bool]:
    """Look through one page (newest first) for our ``message`` sent at or after ``since``,
    skipping messages whose id is already ``attributed`` to other sends.

    Return (the message or None, whether to stop looking). The one lost-send search: the
    clients' ``find_sent`` and the ledger's reconciliation (``workers.effects``) both use it.
    """
    for item in page.items:
        if item.timestamp < since:
            return None, True
        if (
            item.direction == "outbound"
            and item.text == message
            and (item.wa_message_id or item.id) not in attributed
        ):
            return item, True
    return None, not page.has_more or not page.next_cursor


# -- templates ------------------------------------------------------------------------------


def _templates(body: Any, _server_time: datetime | None) -> list[Template]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("data is not a list")
    return [Template.from_json(item) for item in data]


def _template(body: Any, _server_time: datetime | None) -> Template:
    data = body.get("data", body) if isinstance(body, dict) else body
    return Template.from_json(data)


def templates() -> Call[list[Template]]:
    return Call("templates", "GET", "templates", _templates)


def create_template(
    name: str, category: str, language: str, components: Sequence[Mapping[str, Any]]
) -> Call[Template]:
    _refuse("create_template", check_template(name, category, language, list(components)))
    body = {
        "name": name,
        "category": category,
        "language": language,
        "components": [dict(c) for c in components],
    }
    return Call(
        "create_template", "POST", "templates", _template, body=body, idempotent=False, paced=True
    )


def edit_template(
    template_id: str, category: str, components: Sequence[Mapping[str, Any]]
) -> Call[Template]:
    if not template_id.isdigit():
        _refuse(
            "edit_template",
            Problem("Invalid parameter", "templates are edited by numeric id, not by name"),
        )
    _refuse("edit_template", check_category(category))
    _refuse("edit_template", check_components(list(components)))
    body = {"category": category, "components": [dict(c) for c in components]}
    path = f"templates/{template_id}/edit"
    route = "templates/{template_id}/edit"
    return Call("edit_template", "POST", path, _template, body=body, route=route)


def delete_template(name: str) -> Call[None]:
    if not name:
        _refuse("delete_template", Problem("Invalid parameter", "name must not be empty"))
    path = f"templates/{quote(name, safe='')}"
    return Call("delete_template", "DELETE", path, _ignore, route="templates/{name}")


# -- webhook configuration ------------------------------------------------------------------


def _webhook_config(body: Any, _server_time: datetime | None) -> WebhookConfig:
    if not isinstance(body, dict):
        raise ValueError("response is not an object")
    return WebhookConfig.from_json(body.get("data"))


def _webhook_test(body: Any, _server_time: datetime | None) -> WebhookTestResult:
    return WebhookTestResult.from_json(body)


def webhook() -> Call[WebhookConfig]:
    return Call("webhook", "GET", "webhook", _webhook_config)


def set_webhook(url: str, enabled: bool, events: Sequence[str] | None) -> Call[WebhookConfig]:
    body: dict[str, Any] = {"webhookUrl": url, "webhookEnabled": enabled}
    if events is not None:
        _refuse("set_webhook", check_webhook_events(list(events)))
        body["webhookEvents"] = list(events)
    return Call("set_webhook", "PUT", "webhook", _webhook_config, body=body)


def test_webhook() -> Call[WebhookTestResult]:
    return Call("test_webhook", "POST", "webhook/test", _webhook_test)


def delete_webhook() -> Call[None]:
    return Call("delete_webhook", "DELETE", "webhook", _ignore)
