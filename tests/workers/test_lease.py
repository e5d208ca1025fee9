"""The send fence (``workers.lease``, checked by ``service.portal.transport.adrive``), sync
handlers' calls cancelled with their execution (``workers.bridge``), and a job's timeout
stopped while it waits for a thread (``workers.threads``). Time is an injected clock or the
loop's, moved by the test; nothing waits on the wall clock."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from service.portal import AsyncPortalClient, OutcomeUnknown, PortalSettings
from service.portal.fence import current_fence
from tests.support.portal import FAST_RETRY
from workers.bridge import Bridge, BridgeClosed
from workers.execution import ExecutionToken, Superseded
from workers.lease import SEND_MARGIN, Lease, check_lease, send_margin
from workers.threads import Threads, job_deadline

PHONE = "919876543210"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_margin_and_the_shortest_lease() -> None:
    assert send_margin(30) == SEND_MARGIN == 5.0 and send_margin(6) == 1.0
    check_lease(30, 15)  # the defaults: 3/4 of 30 = 22.5 s > 15 + 5
    with pytest.raises(ValueError, match="WABAHOOKS_LEASE=25 s is too short") as refused:
        check_lease(25, 15)
    assert "WABA_API_TIMEOUT=15 s" in str(refused.value)
    check_lease(5, 2)  # the process tests' lease and timeout


def test_a_send_starts_only_while_enough_of_the_lease_is_left() -> None:
    clock = Clock()
    token = ExecutionToken("j", "e")
    lease = Lease(token, 30, clock.now, clock=clock)

    async def main() -> list[Any]:
        assert await lease.clearance(15) == 25.0  # 30 left, less the 5 s margin
        clock.now += 10.5  # 19.5 left: 14.5 after the margin, less than the 15 s timeout
        waiting = asyncio.create_task(lease.clearance(15))
        await asyncio.sleep(0)
        assert not waiting.done()  # it waits for the next renewal, it does not fail
        lease.renewed(clock.now - 0.1)  # a renewal sent 0.1 s ago, taken by Redis
        granted = await waiting
        clock.now += 40  # frozen past the lease: the renewal finds the job re-driven
        refused = asyncio.create_task(lease.clearance(15))
        await asyncio.sleep(0)
        token.cancel()
        with pytest.raises(Superseded):
            await refused
        return [granted]

    assert asyncio.run(main()) == [pytest.approx(24.9)]


def _client(answer: Any) -> AsyncPortalClient:
    settings = PortalSettings(api_url="http://portal.test/api/v1", api_key="k", read_timeout=15)
    return AsyncPortalClient(settings, retry=FAST_RETRY, transport=httpx.MockTransport(answer))


class Fence:
    """A fence that grants ``allowed`` s, or refuses; records what it was asked."""

    def __init__(self, allowed: float | None) -> None:
        self.allowed = allowed
        self.asked: list[float] = []
        self.ends = 0

    async def clearance(self, needed: float) -> float:
        self.asked.append(needed)
        if self.allowed is None:
            raise Superseded(ExecutionToken("j", "e"), "refused by the test")
        return self.allowed

    def ended(self) -> None:
        self.ends += 1


def test_every_request_that_writes_asks_the_fence_and_reads_do_not() -> None:
    requests: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request.method)
        if request.method == "GET":
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json={"messageId": "wamid.1"})

    async def main(fence: Fence) -> None:
        current_fence.set(fence)
        async with _client(answer) as client:
            await client.messages(PHONE)
            await client.mark_read("wamid.in", show_typing_indicator=True)
            await client.send_text(PHONE, "hi")

    granted = Fence(60)
    asyncio.run(main(granted))
    assert granted.asked == [15, 15] and requests == ["GET", "POST", "POST"]
    assert granted.ends == 2

    refused, requests[:] = Fence(None), []
    with pytest.raises(Superseded):
        asyncio.run(main(refused))
    assert requests == ["GET"]  # the refused write never left


def test_a_request_outliving_what_the_fence_granted_is_cut_off_as_an_unknown_outcome() -> None:
    release = asyncio.Event()

    async def answer(_request: httpx.Request) -> httpx.Response:
        await release.wait()  # the portal never answers in time
        return httpx.Response(200, json={"messageId": "wamid.late"})

    async def main() -> None:
        current_fence.set(Fence(0.01))  # the loop's own timer cuts it: no wall-clock assertion
        async with _client(answer) as client:
            with pytest.raises(OutcomeUnknown, match="ReadTimeout") as unknown:
                await client.send_text(PHONE, "hi")
            assert "cut off" in str(unknown.value.__cause__)

    asyncio.run(main())


def test_a_sync_handler_s_calls_are_cancelled_with_its_execution() -> None:
    started, unblocked = threading.Event(), threading.Event()
    outcomes: list[str] = []

    async def send() -> str:
        started.set()
        await asyncio.Event().wait()  # a send that never returns by itself
        return "sent"

    def handler(bridge: Bridge) -> None:
        try:
            bridge.run(send())
        except BridgeClosed:
            outcomes.append("cancelled")
        try:
            bridge.run(send())
        except BridgeClosed:
            outcomes.append("refused")
        unblocked.set()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        bridge = Bridge(loop)
        thread = threading.Thread(target=handler, args=(bridge,))
        thread.start()
        await loop.run_in_executor(None, started.wait)
        bridge.cancel()  # the engine gave up on the execution
        await loop.run_in_executor(None, unblocked.wait)
        thread.join()

    asyncio.run(main())
    assert outcomes == ["cancelled", "refused"]


def test_a_job_s_timeout_stops_while_it_waits_for_a_thread() -> None:
    gate = threading.Event()

    async def main() -> float:
        threads = Threads(1)
        busy = asyncio.create_task(threads.run(gate.wait))  # the only thread, taken
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(100) as deadline:
            job_deadline.set(deadline)
            waiting = asyncio.create_task(threads.run(lambda: None))
            await asyncio.sleep(0)
            assert deadline.when() is None  # stopped while no thread is free
            gate.set()
            await busy
            await waiting
            left = deadline.when()
            assert left is not None
            threads.shutdown()
            return left - loop.time()

    assert 99 < asyncio.run(main()) <= 100  # the time that was left, given back
