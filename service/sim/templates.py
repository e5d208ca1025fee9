"""The simulator's message templates, with the portal's rules (spec §3).

Ids are numeric strings; edits go by id and only for REJECTED templates; deletes go by
name (every language). New and edited templates wait in PENDING until the control API
(``POST /sim/templates/{id or name}/status``) approves or rejects them.
"""

from __future__ import annotations

from typing import Any

from service.portal.validation import check_category, check_components, check_template
from service.sim.config import Refusal

__all__ = ["TemplateStore"]

STATUSES = frozenset({"APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED"})
FIRST_ID = 100000001


def _invalid() -> Refusal:
    return Refusal(400, "Invalid parameter")


def _not_found() -> Refusal:
    return Refusal(404, "Template not found")


class TemplateStore:
    """Templates by id, in creation order."""

    def __init__(self) -> None:
        self._by_id: dict[str, dict[str, Any]] = {}
        self._next = FIRST_ID

    def all(self) -> list[dict[str, Any]]:
        return [dict(t) for t in self._by_id.values()]

    def create(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _invalid()
        name, category = body.get("name"), body.get("category")
        language, components = body.get("language"), body.get("components")
        if check_template(name, category, language, components):
            raise _invalid()
        for template in self._by_id.values():
            # A name is one template in several languages, all of one category.
            if template["name"] == name and (
                template["category"] != category or template["language"] == language
            ):
                raise _invalid()
        template = {
            "id": str(self._next),
            "name": name,
            "status": "PENDING",
            "category": category,
            "language": language,
            "components": components,
        }
        self._next += 1
        self._by_id[template["id"]] = template
        return dict(template)

    def edit(self, template_id: str, body: Any) -> dict[str, Any]:
        template = self._by_id.get(template_id) if template_id.isdigit() else None
        if template is None:
            raise _not_found()
        if template["status"] != "REJECTED":
            raise Refusal(
                400, f"Only REJECTED templates can be edited; this one is {template['status']}"
            )
        if not isinstance(body, dict):
            raise _invalid()
        category = body.get("category", template["category"])
        components = body.get("components", template["components"])
        if check_category(category) or check_components(components):
            raise _invalid()
        if category != template["category"]:
            raise Refusal(400, "Template category doesn't match")
        template.update(components=components, status="PENDING")
        return dict(template)

    def delete(self, name: str) -> None:
        doomed = [tid for tid, t in self._by_id.items() if t["name"] == name]
        if not doomed:
            raise _not_found()
        for tid in doomed:
            del self._by_id[tid]

    def set_status(self, key: str, status: Any) -> list[dict[str, Any]]:
        """Set the review status of the template with id ``key``, or of every one named ``key``."""
        if status not in STATUSES:
            raise Refusal(400, f"status must be one of {', '.join(sorted(STATUSES))}")
        matched = [t for tid, t in self._by_id.items() if key in (tid, t["name"])]
        if not matched:
            raise _not_found()
        for template in matched:
            template["status"] = status
        return [dict(t) for t in matched]
