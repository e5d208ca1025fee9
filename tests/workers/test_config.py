"""The configuration file: loaded once, validated, every error naming its key."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from workers.builtins import routers
from workers.config import Config, ConfigError, load_config, parse_config
from workers.testing import Harness, status_update

ROOT = Path(__file__).resolve().parents[2]


def parse(text: str, **env: str) -> Config:
    return parse_config(tomllib.loads(text), env=env)


def error_of(text: str, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, **env)
    return caught.value


def test_the_example_file_validates_and_enables_every_builtin() -> None:
    config = load_config(
        {"WABAHOOKS_CONFIG": str(ROOT / "wabahooks.example.toml"), "CRM_FORWARD_SECRET": "s"}
    )
    assert config.mark_read is not None and config.mark_read.mode == "when-replying"
    assert config.auto_reply is not None and config.auto_reply.rules
    assert config.auto_reply.hours is not None
    assert config.forward is not None and config.forward.http and config.forward.whatsapp
    assert config.status_tracking is not None
    assert config.agents


def test_no_file_and_no_sections_is_nothing_enabled(tmp_path: Path) -> None:
    config = load_config({"WABAHOOKS_CONFIG": ""})
    assert (config.mark_read, config.auto_reply, config.forward, config.status_tracking) == (
        None,
        None,
        None,
        None,
    )


def test_a_named_file_that_does_not_exist_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="WABAHOOKS_CONFIG: names .*missing.toml"):
        load_config({"WABAHOOKS_CONFIG": str(tmp_path / "missing.toml")})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[handlers.mark_read\n")
    with pytest.raises(ConfigError, match="bad.toml is not valid TOML"):
        load_config({"WABAHOOKS_CONFIG": str(path)})


def test_errors_in_a_file_name_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "wabahooks.toml"
    path.write_text('[handlers.mark_read]\nmode = "sometimes"\n')
    with pytest.raises(ConfigError) as caught:
        load_config({"WABAHOOKS_CONFIG": str(path)})
    assert str(caught.value).startswith(f"{path}: handlers.mark_read.mode: must be one of")
    assert caught.value.key == "handlers.mark_read.mode"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            '[handlers.auto_reply]\n[[handlers.auto_reply.rules]]\ntext = "a"\nreply = "x"\n'
            '[[handlers.auto_reply.rules]]\ntext = "b"\nreply = "y"\n'
            '[[handlers.auto_reply.rules]]\nregex = "(unclosed"\nreply = "z"\n',
            "handlers.auto_reply.rules[2].regex",
            "not a valid regular expression: missing ), unterminated subpattern",
        ),
        (
            '[handlers.auto_reply]\n[[handlers.auto_reply.rules]]\ncontains = "x"\n',
            "handlers.auto_reply.rules[0].reply",
            "is required",
        ),
        (
            '[handlers.auto_reply]\n[[handlers.auto_reply.rules]]\nreply = "x"\n',
            "handlers.auto_reply.rules[0]",
            "needs a matcher",
        ),
        (
            '[handlers.auto_reply]\n[[handlers.auto_reply.rules]]\ntext = "x"\nreplay = "y"\n',
            "handlers.auto_reply.rules[0].replay",
            "unknown key",
        ),
        (
            '[handlers.auto_reply]\ndefault = "Hi {name.__class__}"\n',
            "handlers.auto_reply.default",
            "unknown placeholder {name.__class__}",
        ),
        (
            '[handlers.auto_reply]\ncooldown = "1h"\n',
            "handlers.auto_reply.cooldown",
            "must be a whole number",
        ),
        (
            '[handlers.auto_reply]\nout_of_hours = "closed"\n',
            "handlers.auto_reply.out_of_hours",
            "needs [handlers.auto_reply.hours]",
        ),
        (
            '[handlers.auto_reply.hours]\ntimezone = "Mars/Olympus"\nopen = "09:00"\n'
            'close = "17:00"\n',
            "handlers.auto_reply.hours.timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            '[handlers.auto_reply.hours]\nopen = "9 am"\nclose = "17:00"\n',
            "handlers.auto_reply.hours.open",
            "must be a time of day",
        ),
        (
            '[handlers.auto_reply.hours]\ndays = ["mon", "funday"]\nopen = "09:00"\n'
            'close = "17:00"\n',
            "handlers.auto_reply.hours.days",
            "unknown day 'funday'",
        ),
        (
            '[agents]\nnumbers = ["+91 98765 43210", "agent-7"]\n',
            "agents.numbers",
            "phone numbers are digits",
        ),
        (
            '[handlers.forward]\n[[handlers.forward.http]]\nurl = "http://crm.example.com/h"\n'
            'secret = "s"\n',
            "handlers.forward.http[0].url",
            "must be an https:// URL",
        ),
        (
            '[handlers.forward]\n[[handlers.forward.http]]\nurl = "https://crm.example.com/h"\n',
            "handlers.forward.http[0].secret",
            "is required",
        ),
        (
            '[handlers.forward]\n[[handlers.forward.http]]\nurl = "https://crm.example.com/h"\n'
            'secret_env = "NO_SUCH_VARIABLE_SET"\n',
            "handlers.forward.http[0].secret_env",
            "the environment variable NO_SUCH_VARIABLE_SET is not set",
        ),
        (
            '[handlers.forward]\n[[handlers.forward.http]]\nurl = "https://c.example.com/h"\n'
            'secret = "s"\nevents = ["messages"]\n',
            "handlers.forward.http[0].events",
            "unknown event 'messages'",
        ),
        (
            '[handlers.forward]\n[[handlers.forward.whatsapp]]\nto = "919800000001"\n'
            'number = "partly"\n',
            "handlers.forward.whatsapp[0].number",
            "must be masked or full",
        ),
        ("[handlers.forward]\n", "handlers.forward", "forwards nowhere"),
        (
            "[handlers.status_tracking]\nretention = 5\n",
            "handlers.status_tracking.retention",
            "must be at least 60 seconds",
        ),
    ],
)
def test_errors_name_the_key(text: str, key: str, problem: str) -> None:
    error = error_of(text)
    assert error.key == key
    assert problem in error.problem
    assert str(error).startswith(f"{key}: ")


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[polcy]\nenabled = true\n", "polcy", "unknown table; did you mean 'policy'?"),
        ("[polcy.handover]\n", "polcy", "unknown table; did you mean 'policy'?"),
        ("[handler.orders]\n", "handler", "unknown table; did you mean 'handlers'?"),
        ("[agent]\n", "agent", "unknown table; did you mean 'agents'?"),
        ('modules = ["myapp.orders"]\n', "modules", "known tables: agents, handlers, policy"),
        ("[handlers.mark_read]\nmdoe = 'always'\n", "handlers.mark_read.mdoe", "'mode'?"),
    ],
)
def test_unknown_tables_and_keys_are_errors_with_a_suggestion(
    text: str, key: str, problem: str
) -> None:
    error = error_of(text)
    assert error.key == key
    assert problem in error.problem
    assert str(error).startswith(f"{key}: ")


def test_a_section_enables_its_builtin_and_enabled_false_turns_it_off() -> None:
    assert parse("[handlers.mark_read]\n").mark_read is not None
    assert parse("[handlers.mark_read]\nenabled = false\n").mark_read is None
    assert parse("[handlers.mark_read]\n").auto_reply is None


def test_business_hours_in_their_time_zone() -> None:
    config = parse(
        '[handlers.auto_reply]\nout_of_hours = "closed"\n'
        '[handlers.auto_reply.hours]\ntimezone = "Asia/Kolkata"\ndays = ["mon", "tue"]\n'
        'open = "09:00"\nclose = 18:00:00\n'
    )
    assert config.auto_reply is not None and config.auto_reply.hours is not None
    hours = config.auto_reply.hours
    monday_10_ist = dt.datetime(2025, 12, 1, 4, 30, tzinfo=dt.UTC)  # 10:00 in Kolkata
    assert hours.is_open(monday_10_ist)
    assert not hours.is_open(monday_10_ist + dt.timedelta(hours=9))  # 19:00
    assert not hours.is_open(monday_10_ist + dt.timedelta(days=2))  # Wednesday


def test_environment_overrides_the_file() -> None:
    text = (
        '[agents]\nnumbers = ["919800000001"]\n[handlers.mark_read]\nmode = "never"\n'
        "[handlers.status_tracking]\nretention = 600\n"
        '[handlers.forward]\n[[handlers.forward.http]]\nurl = "http://127.0.0.1:9/h"\n'
        'secret_env = "CRM_SECRET"\n'
    )
    config = parse(
        text,
        WABAHOOKS_MARK_READ_MODE="always",
        WABAHOOKS_AGENT_NUMBERS="919800000002, 919800000003",
        WABAHOOKS_STATUS_RETENTION="3600",
        WABAHOOKS_FORWARD_ALLOW_PRIVATE="1",
        CRM_SECRET="from-env",
    )
    assert config.mark_read is not None and config.mark_read.mode == "always"
    assert config.agents == {"919800000002", "919800000003"}
    assert config.status_tracking is not None and config.status_tracking.retention == 3600
    assert config.forward is not None and config.forward.allow_private_targets
    assert config.forward.http[0].secret == "from-env"
    assert config.section("mark_read")["mode"] == "always"  # ctx.config sees the override


def test_wabahooks_builtins_chooses_which_run() -> None:
    text = "[handlers.mark_read]\n[handlers.status_tracking]\n"
    only = parse(text, WABAHOOKS_BUILTINS="mark_read")
    assert only.mark_read is not None and only.status_tracking is None
    none = parse(text, WABAHOOKS_BUILTINS="none")
    assert none.mark_read is None and none.status_tracking is None
    added = parse("", WABAHOOKS_BUILTINS="status_tracking")
    assert added.status_tracking is not None
    error = error_of("", WABAHOOKS_BUILTINS="mark_read,autoreply")
    assert error.key == "WABAHOOKS_BUILTINS" and "unknown built-in 'autoreply'" in str(error)


def test_a_bad_override_names_the_variable() -> None:
    error = error_of("", WABAHOOKS_STATUS_RETENTION="a month")
    assert error.key == "WABAHOOKS_STATUS_RETENTION"


def readme_builtins() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("<!-- builtins:begin -->", 1)[1].split("<!-- builtins:end -->", 1)[0]


def test_the_readme_shows_the_example_file_as_it_is() -> None:
    (toml,) = re.findall(r"```toml\n(.*?)```", readme_builtins(), re.S)
    assert toml == (ROOT / "wabahooks.example.toml").read_text(encoding="utf-8")


def test_the_readme_status_changed_example_runs() -> None:
    (code,) = re.findall(r"```python\n(.*?)```", readme_builtins(), re.S)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own README
    harness = Harness(*routers(Config(), [namespace["router"]]))
    with capture_logs() as logs:
        harness.deliver(status_update("wamid.OUT1", "failed", errors=[{"code": 131026}]))
    assert [line["event"] for line in logs if line["log_level"] == "warning"] == [
        "status.failed",
        "delivery.failed",
    ]
