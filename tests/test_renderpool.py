"""The render workers: hard CPU and memory limits whatever a template does, CPU time (not
wall time) as the measure, and failures outside a template told apart from its own."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from runner.templating import renderprocess
from runner.templating.render import EmailJob, RenderedEmail, RenderError, RenderUnavailable
from runner.templating.renderpool import RenderPool

VALUES: dict[str, Any] = {
    "subscriber": {"email": "ann@shop.test", "fields": {"name": "Ann"}, "groups": []},
    "event": {"name": "api", "data": {}},
    "automation": {"id": "welcome", "name": "Welcome"},
    "unsubscribe_url": "https://mail.shop.test/u/t",
}
CPU = 0.5  # seconds: a small cap keeps these tests quick; the product's is 2 s
DOUBLING = (
    "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(21) }}"
)


def slow(inner: int) -> str:
    """A Python-level loop of about `inner` / 100 s of CPU on this machine."""
    loop = f"{{% for j in range({inner}) %}}{{% endfor %}}"
    return f"{{% for i in range(100000) %}}{loop}{{% endfor %}}ok"


def job(html: str) -> EmailJob:
    return EmailJob("Hi {{ subscriber.fields.name }}", None, html, None, VALUES, "https://u/t")


@pytest.fixture
def pool() -> Iterator[RenderPool]:
    workers = RenderPool(1, cpu_seconds=CPU)
    try:
        yield workers
    finally:
        workers.close()


def html(outcome: object) -> str | None:
    assert isinstance(outcome, RenderedEmail), outcome
    return outcome.html


def test_jobs_render_in_order_across_workers() -> None:
    workers = RenderPool(2)
    try:
        jobs = [job(f"<p>{index} {{{{ subscriber.email }}}}</p>") for index in range(200)]
        outcomes = asyncio.run(workers.render_all(jobs))
        assert [html(o) for o in outcomes] == [f"<p>{i} ann@shop.test</p>" for i in range(200)]
        assert isinstance(outcomes[0], RenderedEmail) and outcomes[0].subject == "Hi Ann"
        assert len(workers.worker_pids()) == 2
    finally:
        workers.close()
    assert workers.worker_pids() == []


def test_doubling_recursive_macro_stops_at_the_cpu_cap(pool: RenderPool) -> None:
    started = time.monotonic()
    first, hostile, last = pool.render([job("a"), job(DOUBLING), job("b")])
    assert time.monotonic() - started < CPU + 3
    assert (html(first), html(last)) == ("a", "b")
    assert isinstance(hostile, RenderError)
    assert str(hostile) == f"rendering used more than {CPU:g} s of CPU"


def test_a_job_the_worker_cannot_interrupt_is_killed_and_the_worker_replaced(
    pool: RenderPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CPython checks its signals between bytecodes and inside big-integer arithmetic, so a
    # template can hardly hold one C call past the cap; the kill is the backstop for one.
    # A negative grace makes the pool's watch fire before the worker's own timer.
    monkeypatch.setattr(renderprocess, "KILL_GRACE", -CPU / 2)
    pool.render([job("warm")])
    [before] = pool.worker_pids()
    started = time.monotonic()
    outcomes = pool.render([job("a"), job(slow(1000)), job("b"), job("c")])
    assert time.monotonic() - started < CPU + 5
    assert [html(o) for o in (outcomes[0], *outcomes[2:])] == ["a", "b", "c"]
    assert isinstance(outcomes[1], RenderError)
    assert str(outcomes[1]) == f"rendering used more than {CPU:g} s of CPU"
    assert pool.worker_pids() not in ([before], [])


def test_memory_is_capped_in_the_worker_not_the_server() -> None:
    pool = RenderPool(1)  # the product's CPU cap: filling memory takes a busy machine a while
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doubling = (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s | length }}"
    )
    padded = "{{ 'x' | center(400000000) }}"
    huge, wide, fine = pool.render([job(doubling), job(padded), job("fine")])
    assert str(huge) == "html: rendering needs more memory than a render may use"
    assert str(wide) == "html: a width of 400000000 is larger than the output cap (1048576)"
    assert html(fine) == "fine"
    pool.close()
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50 * 1024


def test_a_worker_killed_from_outside_is_unavailable_not_a_template_error() -> None:
    pool = RenderPool(1)
    pool.render([job("warm")])
    [pid] = pool.worker_pids()
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    first, killed, last = pool.render([job("a"), job(slow(120)), job("b")])
    killer.join()
    assert (html(first), html(last)) == ("a", "b")
    assert isinstance(killed, RenderUnavailable)
    assert "signal 9" in str(killed)
    assert html(pool.render([job("again")])[0]) == "again"
    pool.close()


def test_a_paused_worker_is_measured_in_cpu_time_not_wall_time() -> None:
    workers = RenderPool(1, cpu_seconds=1.0)
    try:
        workers.render([job("warm")])
        [pid] = workers.worker_pids()

        def pause() -> None:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(1.5)  # longer than the cap, on the wall clock
            os.kill(pid, signal.SIGCONT)

        pauser = threading.Timer(0.05, pause)
        pauser.start()
        started = time.monotonic()
        [outcome] = workers.render([job(slow(20))])
        pauser.join()
        assert time.monotonic() - started > 1.5
        assert html(outcome) == "ok"
    finally:
        workers.close()


def test_a_worker_stopped_for_good_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(renderprocess, "STALL_SECONDS", 0.5)
    pool = RenderPool(1)
    pool.render([job("warm")])
    [pid] = pool.worker_pids()
    stopper = threading.Timer(0.1, os.kill, (pid, signal.SIGSTOP))
    stopper.start()
    stuck, after = pool.render([job(slow(120)), job("after")])
    stopper.join()
    pool.close()
    assert isinstance(stuck, RenderUnavailable) and "used no CPU" in str(stuck)
    assert html(after) == "after"


def test_workers_do_not_inherit_the_servers_secrets(
    pool: RenderPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTWRIGHT_API_KEY", "secret-key-123")
    pool.close()
    pool.render([job("warm")])
    [pid] = pool.worker_pids()
    with open(f"/proc/{pid}/environ", "rb") as environ:
        assert b"secret-key-123" not in environ.read()


def test_no_worker_can_start_is_unavailable(
    pool: RenderPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    [outcome] = pool.render([job("x")])
    assert isinstance(outcome, RenderUnavailable)
    assert "no render worker could start" in str(outcome)
