"""The fallback's CPU budget: a token bucket of seconds."""

from __future__ import annotations

from service.budget import CpuBudget


def test_the_fallback_budget_runs_out_and_refills() -> None:
    budget = CpuBudget(share=1e-9, burst=0.01)

    assert budget.available()
    budget.spend(0.02)  # one fallback that took longer than the whole burst
    assert not budget.available()
    budget.spend(-1.0)  # as if much time had passed
    assert budget.available()
