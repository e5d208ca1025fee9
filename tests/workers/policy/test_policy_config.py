"""``[policy]``: defaults, every option, and errors that name the key."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.workers import WorkerProcess
from workers import builtins
from workers.config import parse_config
from workers.loading import HandlerLoadError
from workers.policy.config import PolicyConfig, policy_config
from workers.router import Router
from workers.sections import ConfigError


def load(text: str) -> PolicyConfig | None:
    raw = tomllib.loads(text)
    parse_config(raw, env={})
    return policy_config(raw)


def test_absent_or_disabled_means_off() -> None:
    assert load("") is None
    assert load("[policy]\nenabled = false\n") is None


def test_defaults() -> None:
    config = load("[policy]\n[agents]\nnumbers = ['+1 415 555 0123']\n")
    assert config is not None
    assert config.agents == {"14155550123"}
    assert "stop" in config.optout.stop_words and "baja" in config.optout.stop_words
    assert config.handover.keywords == {"agent", "human"}
    assert (config.handover.idle, config.window.margin, config.window.nudge_margin) == (
        1800,
        300,
        3600,
    )


def test_every_option() -> None:
    config = load(
        """
[policy.optout]
stop_words = ["Halt  Now"]
start_words = ["go"]
stop_reply = "bye"
start_reply = "hi"
[policy.handover]
keywords = ["Person"]
payloads = ["AGENT_BTN"]
idle = 60
detect_inbox = false
on_notice = "on"
off_notice = "off"
done_command = "#END"
[policy.window]
margin = 0
nudge_margin = 7200
nudge = "write to us"
[[handlers.forward.whatsapp]]
to = "14155550123"
"""
    )
    assert config is not None
    c = config
    assert c.optout.stop_words == {"halt now"} and c.optout.start_words == {"go"}
    assert c.handover.keywords == {"person"} and c.handover.done_command == "#end"
    assert c.handover.payloads == {"AGENT_BTN"} and not c.handover.detect_inbox
    assert c.window.nudge_margin == 7200 and c.agents == {"14155550123"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[policy]\ncolour = 1\n", "policy.colour: unknown key"),
        ("[policy.optout]\nstop_words = []\n", "policy.optout.stop_words: must not be an empty"),
        (
            "[policy.optout]\nstop_words = ['stop']\nstart_words = ['STOP']\n",
            "policy.optout.start_words: also stop words: stop",
        ),
        ("[policy.handover]\nidle = -1\n", "policy.handover.idle: must be 0 to"),
        ("[policy.handover]\ndone_command = 'done'\n", "policy.handover.done_command: must start"),
        ("[policy.window]\nnudge_margin = 90000\n", "policy.window.nudge_margin: must be 0 to"),
        ("[policy.window]\nnudge = ' '\n", "policy.window.nudge: must not be empty"),
        ("[policy.handover]\ndetect_inbox = 'yes'\n", "detect_inbox: must be true or false"),
    ],
)
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load(text)


def test_a_user_router_may_not_be_called_policy() -> None:
    config = parse_config(tomllib.loads("[policy]\n"), env={})
    with pytest.raises(HandlerLoadError, match="policy"):
        builtins.routers(config, [Router("policy")])


def test_the_policy_router_runs_after_mark_read_before_user_routers() -> None:
    config = parse_config(tomllib.loads("[policy]\n[handlers.mark_read]\n"), env={})
    names = [r.name for r in builtins.routers(config, [Router("mine")])]
    assert names == ["mark_read", "policy", "mine"]


def test_a_bad_policy_stops_the_worker_naming_the_file_and_key(
    tmp_path: Path, start_worker: Callable[..., WorkerProcess]
) -> None:
    path = tmp_path / "wabahooks.toml"
    path.write_text("[policy.handover]\nidle = 'long'\n")
    worker = start_worker("--queue", "messages", "--burst", WABAHOOKS_CONFIG=str(path))
    output = worker.output()
    assert worker.proc.returncode == 2
    assert f"{path}: policy.handover.idle: must be a whole number" in output
