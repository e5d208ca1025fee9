"""Agent numbers follow the portal's phone rule (service.portal.validation.check_phone)."""

from __future__ import annotations

import pytest

from service.portal.validation import check_phone
from workers.sections import ConfigError, phone_numbers


@pytest.mark.parametrize("number", ["4930123", "1234567", "0919876543210", "9198765432101234"])
def test_numbers_the_portal_refuses_are_refused_in_config(number: str) -> None:
    assert check_phone(number) is not None
    with pytest.raises(ConfigError, match=r"agents\.numbers.*entry 2 is not.*8 to 15 digits"):
        phone_numbers(("919876543210", number), "agents.numbers")


def test_numbers_the_portal_accepts_are_kept_normalised() -> None:
    assert phone_numbers(("+91 98765 43210", "14155550123"), "agents.numbers") == {
        "919876543210",
        "14155550123",
    }
