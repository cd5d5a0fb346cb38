"""The per-provider token bucket on a fake clock: the rate holds, nothing really sleeps."""

from __future__ import annotations

import asyncio

import pytest

from runner.providers.ratelimit import RateLimiter, parse_rate


class FakeTime:
    """A monotonic clock that only moves when the limiter sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(rate: str, fake: FakeTime) -> RateLimiter:
    return RateLimiter(rate, monotonic=fake.monotonic, sleep=fake.sleep)


@pytest.mark.parametrize(
    ("text", "parsed"), [("50/s", (50, 1.0)), ("1000/m", (1000, 60.0)), ("3/h", (3, 3600.0))]
)
def test_parse_rate(text: str, parsed: tuple[int, float]) -> None:
    assert parse_rate(text) == parsed


@pytest.mark.parametrize("text", ["0/s", "5/d", "x/s", "5", "-1/s", ""])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        parse_rate(text)


def test_a_full_bucket_allows_a_burst_then_holds_the_rate() -> None:
    fake = FakeTime()
    bucket = limiter("10/s", fake)
    start = fake.now
    times: list[float] = []

    async def main() -> None:
        for _ in range(50):
            assert await bucket.acquire() is True
            times.append(fake.now - start)

    asyncio.run(main())
    assert times[:10] == [0.0] * 10  # the burst
    # 40 more at 10/s take 4 s; in any 1 s window after the burst at most 10 go
    assert times[-1] == pytest.approx(4.0)
    for i in range(10, 40):
        assert times[i + 10] - times[i] == pytest.approx(1.0)
    assert sum(fake.slept) == pytest.approx(4.0)


def test_concurrent_acquirers_share_one_bucket() -> None:
    fake = FakeTime()
    bucket = limiter("2/s", fake)
    start = fake.now
    done: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        done.append(fake.now - start)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(8)))

    asyncio.run(main())
    assert sorted(done) == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def test_tokens_refill_while_idle_up_to_the_capacity_only() -> None:
    fake = FakeTime()
    bucket = limiter("3/m", fake)
    for _ in range(3):
        assert bucket.try_acquire() == 0.0
    assert bucket.try_acquire() == pytest.approx(20.0)  # one token per 20 s
    fake.now += 3600.0  # a long idle hour refills 3 tokens, not 180
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_acquire() > 0.0


def test_max_wait_gives_up_without_taking_a_token() -> None:
    fake = FakeTime()
    bucket = limiter("1/m", fake)

    async def main() -> tuple[bool, bool, bool]:
        first = await bucket.acquire(max_wait=1.0)
        second = await bucket.acquire(max_wait=30.0)  # the next token is 60 s away
        fake.now += 60.0
        third = await bucket.acquire(max_wait=0.0)
        return first, second, third

    assert asyncio.run(main()) == (True, False, True)
    assert fake.slept == []
