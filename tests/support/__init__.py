"""Test support: the fixtures plugin and the helpers tests import (see ``plugin``)."""
