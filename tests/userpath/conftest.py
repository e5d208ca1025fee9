"""Fixtures for the user-path tests: the receiver (under uvicorn in a thread)."""

from tests.service.conftest import receiver, start_receiver  # noqa: F401 - fixtures
