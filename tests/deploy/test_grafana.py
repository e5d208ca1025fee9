"""deploy/grafana/wabahooks.json: it parses, every query names only metrics (and labels) we
export, read from the code's own registries, every metric we export is on it, and the
Prometheus data source is a variable (README "Metrics")."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.metrics import ReceiverMetrics
from service.redisguard import MemoryState
from tests.deploy.support import DEPLOY
from tests.support.bredis import BytesRedis
from workers.metrics import QueueDepthCollector, WorkerMetrics

DASHBOARD = DEPLOY / "grafana" / "wabahooks.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def exported(r: BytesRedis) -> dict[str, set[str]]:
    """Every sample name the receiver and `wabahooks metrics` export → its label names.

    Each metric is used once through its owner's public methods, so that labelled metrics
    have samples to read their names and labels from."""
    receiver = ReceiverMetrics()
    receiver.request("accepted")
    receiver.memory(MemoryState(used=1, maxmemory=2, high_water=1, policy="noeviction"))
    receiver.observe_intake(0.001)
    receiver.observe_batch(1)
    receiver.unparsed.inc()
    workers = WorkerMetrics()
    workers.event("message", "done")
    workers.unhandled("message")
    workers.handler("mine:greet", "ok", 0.01)
    workers.portal_request("send_text", "200", 0.05)
    workers.limiter_wait(0.1)
    queues = CollectorRegistry()
    queues.register(QueueDepthCollector(r, ["wabahooks:messages"]))
    names: dict[str, set[str]] = {}
    for registry in (receiver.registry, workers.registry, queues):
        for family in registry.collect():
            for sample in family.samples:
                names.setdefault(sample.name, set()).update(sample.labels)
    return names


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def queries(dashboard: dict[str, Any]) -> Iterator[str]:
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["query"]["query"]


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*(\w+)\s*\)")
_NAME = re.compile(r"[a-zA-Z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def parse(expr: str) -> tuple[set[str], set[str]]:
    """Return (metric names, label names) a PromQL query (or a Grafana ``label_values``)
    names: label names from matchers, groupings and ``label_values``."""
    labels: set[str] = set()
    metrics: set[str] = set()
    for metric, label in _LABEL_VALUES.findall(expr):
        metrics.add(metric)
        labels.add(label)
    expr = _LABEL_VALUES.sub(" ", expr)
    expr = _STRINGS.sub('""', expr)
    for matchers in _MATCHERS.findall(expr):
        labels.update(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    expr = _MATCHERS.sub(" ", expr)
    for grouped in _GROUPING.findall(expr):
        labels.update(name.strip() for name in grouped.split(",") if name.strip())
    expr = _RANGES.sub(" ", _GROUPING.sub(" ", expr))
    for match in _NAME.finditer(expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue  # a function, or an operator
        if match.start() > 0 and expr[match.start() - 1].isdigit():
            continue  # a number's exponent or a duration's unit
        metrics.add(match.group())
    return metrics, labels


def test_the_query_reader_finds_metric_and_label_names() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (call, le) (rate(foo_seconds_bucket{a="x{y}", b!~"z"}'
        "[$__rate_interval]))) / ignoring(kind) bar_total offset 5m and on(q) baz"
    )
    assert parse(expr) == (
        {"foo_seconds_bucket", "bar_total", "baz"},
        {"a", "b", "call", "le", "kind", "q"},
    )
    assert parse("label_values(wabahooks_queue_jobs, queue)") == (
        {"wabahooks_queue_jobs"},
        {"queue"},
    )


@pytest.fixture
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_every_query_names_only_metrics_and_labels_we_export(
    dashboard: dict[str, Any], r: BytesRedis
) -> None:
    names = exported(r)
    seen: set[str] = set()
    for expr in queries(dashboard):
        metrics, labels = parse(expr)
        assert metrics, f"no metric in {expr!r}"
        unknown = metrics - set(names)
        assert not unknown, f"{expr!r} names {unknown}, which we do not export"
        available = set().union(*(names[m] for m in metrics))
        assert labels <= available, f"{expr!r} uses labels {labels - available}"
        seen |= metrics
    # And the other way round: every metric we export is on the dashboard.
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in names}
    shown = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in seen}
    missing = families - shown
    assert not missing, (
        f"exported but not on deploy/grafana/wabahooks.json: add panels for {missing}"
    )


def test_the_data_source_is_a_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE
    assert "${DS_" not in DASHBOARD.read_text(encoding="utf-8")  # no import-time input


def test_panels_are_laid_out_without_overlap(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboard["panels"]):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
    assert dashboard["uid"] == "wabahooks" and isinstance(dashboard["schemaVersion"], int)
