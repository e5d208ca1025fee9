"""The files ``wabahooks new`` writes (``workers.scaffold``), as ``str.format`` templates."""

from __future__ import annotations

__all__ = [
    "COMPOSE",
    "DOCKERFILE",
    "ENV_EXAMPLE",
    "GITIGNORE",
    "HANDLER",
    "PYPROJECT",
    "README",
    "TEST",
]

HANDLER = '''\
"""The {name} handler: answers messages that mention "{name}" (from `wabahooks new handler`).

Its configuration is [handlers.{name}] in wabahooks.toml, read here as ctx.config.
"""

from workers import AsyncContext, InboundMessage, Router

router = Router("{name}")  # a stable name: it keys the ledger and [handlers.{name}]


@router.message(contains="{name}", ignore_case=True, replies=True)
async def answer(event: InboundMessage, ctx: AsyncContext) -> None:
    first_name = (event.contact.name or "").split(" ")[0]
    reply = ctx.config.get("reply", "Thanks, we got your message")
    # Sent through the ledger: exactly once, however often the event is retried.
    await ctx.portal.send_text(event.sender, reply.replace("{{first_name}}", first_name))
    ctx.log.info("{name}.answered")
'''

TEST = '''\
"""The {name} handler's unit test: no Redis, no portal (workers.testing.Harness)."""

from {module} import router
from workers.testing import Harness, inbound_text


def test_answers_a_message_that_mentions_{name}() -> None:
    harness = Harness(router, config={{"{name}": {{"reply": "Hi {{first_name}}!"}}}})

    harness.deliver(inbound_text("Tell me about {name}", name="Asha Rao"))

    assert harness.portal.sent == [("919876543210", "Hi Asha!")]


def test_leaves_other_messages_alone() -> None:
    harness = Harness(router)

    harness.deliver(inbound_text("good morning"))

    assert harness.portal.sent == []
'''

DOCKERFILE = """\
# Your handlers on the wabahooks image: the receiver and the workers run from this one image.
#   docker build -t {package}-wabahooks .
# {image} is the wabahooks image (`docker build -t {image} .` in a wabahooks checkout, or
# your registry's copy of it).
FROM {image}

# Your own dependencies, if any (the image's venv is /opt/venv; pip runs as root here only).
# USER root
# COPY requirements.txt /app/
# RUN pip install --no-cache-dir -r /app/requirements.txt
# USER 10001:10001

COPY {package} /app/{package}
COPY wabahooks.toml /app/wabahooks.toml
# The workers import handler modules from here and read this configuration
# (wabahooks.toml lists the modules: handlers.modules).
ENV WABAHOOKS_APP_DIR=/app \\
    WABAHOOKS_CONFIG=/app/wabahooks.toml
# Fails the build, not the deployment, if a module does not import or a section is wrong.
RUN wabahooks check --handlers-only
"""

COMPOSE = """\
# Your handlers with Valkey, the receiver and one worker per queue, on one host.
#   cp .env.example .env     # fill it in
#   docker compose up -d --build
# In production, put a TLS proxy in front of the receiver (see the wabahooks README's
# Deploying section and its deploy/compose.yaml).

x-app: &app
  build: .
  image: app-wabahooks:local
  environment: &env
    REDIS_URL: redis://valkey:6379/0
    WABA_WEBHOOK_SECRET: ${WABA_WEBHOOK_SECRET:?set WABA_WEBHOOK_SECRET in .env}
    WABA_API_URL: ${WABA_API_URL:?set WABA_API_URL in .env}
    WABA_API_KEY: ${WABA_API_KEY:?set WABA_API_KEY in .env}
  depends_on:
    valkey:
      condition: service_healthy
  read_only: true
  tmpfs:
    - /tmp
  restart: unless-stopped

x-worker: &worker
  <<: *app
  healthcheck:
    disable: true
  stop_grace_period: 35s

services:
  valkey:
    image: valkey/valkey:8.1
    command: [valkey-server, --appendonly, "yes", --appendfsync, everysec,
              --maxmemory-policy, noeviction]
    volumes:
      - valkey-data:/data
    healthcheck:
      test: ["CMD", "valkey-cli", "ping"]
      interval: 5s
      timeout: 3s
      retries: 5
    restart: unless-stopped

  receiver:
    <<: *app
    command: ["serve", "--host", "0.0.0.0", "--port", "8000"]
    ports:
      - "127.0.0.1:8000:8000"

  worker-messages:
    <<: *worker
    command: ["worker", "--queue", "messages"]

  worker-statuses:
    <<: *worker
    command: ["worker", "--queue", "statuses"]

  worker-other:
    <<: *worker
    command: ["worker", "--queue", "other"]

volumes:
  valkey-data:
"""

ENV_EXAMPLE = """\
# Copy to .env and fill in. Never commit .env.
# The portal's webhook secret (wabahooks webhook get --show-secret):
WABA_WEBHOOK_SECRET=
# The portal's API base URL and your API key:
WABA_API_URL=https://portal.example.com/api/v1
WABA_API_KEY=
"""

GITIGNORE = """\
.env
.venv/
.wabahooks/
__pycache__/
"""

PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"
description = "WhatsApp Business webhook handlers for wabahooks"
requires-python = ">=3.11"
dependencies = ["wabahooks"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]

[tool.setuptools.packages.find]
include = ["{package}*"]
"""

README = """\
# {name}

WhatsApp Business webhook handlers, run by wabahooks workers (its README is the manual).

- `{package}/`: the handler modules (each has a `Router`); `wabahooks.toml` lists them
  (`handlers.modules`) and holds each one's `[handlers.NAME]` section.
- `tests/`: their unit tests (`python -m pytest`, no Redis needed).
- `wabahooks new handler NAME`: another handler, its section and its test.
- `wabahooks check --handlers-only`: loads them exactly as the workers will.
- `wabahooks dev`: everything on this machine, against the portal simulator; the workers
  restart when you save.
- `Dockerfile` (FROM the wabahooks image) and `compose.yaml`: how they ship.
"""
