"""The suite's fixtures are a plugin, ``tests/support/plugin.py``; helpers the tests import
live beside it in ``tests/support/``."""

pytest_plugins = ("tests.support.plugin",)
