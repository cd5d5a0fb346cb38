"""The real deploy/Dockerfile, built and run with podman (docs/deploy.md "The image").

Builds the image on a Debian base made here (tests/container.py), then checks what a user
relies on: the image runs as a non-root user with its data under one volume and a health
check; `serve` refuses a network address without API keys; with keys it answers /healthz,
/readyz, takes an event and sends the welcome email. Skipped, saying why, only where no
container can run; POSTWRIGHT_REQUIRE_CONTAINER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.container import (
    REQUIRE_VARIABLE,
    ULIMITS,
    Engine,
    EngineUnavailable,
    base_image,
    build_arguments,
    probe,
    start_engine,
)
from tests.harness import WELCOME, write_repo

ROOT = Path(__file__).resolve().parents[1]
KEY = "container-test-key"
WAIT_SECONDS = 60.0
# docs/deploy.md "Backups": SQLite's online backup through the image's own Python.
BACKUP = (
    "import sqlite3; s = sqlite3.connect('/data/postwright.db'); "
    "d = sqlite3.connect('/data/backup.db'); s.backup(d); d.close(); s.close()"
)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    try:
        engine = start_engine()
    except EngineUnavailable as error:
        _skip_or_fail(str(error))
    try:
        yield engine
    finally:
        engine.close()


@pytest.fixture(scope="module")
def image(engine: Engine) -> Iterator[str]:
    try:
        base = base_image(engine)
        probe(engine, base)
    except EngineUnavailable as error:
        _skip_or_fail(str(error))
    name = f"localhost/postwright-test:{uuid.uuid4().hex[:12]}"
    build = ["build", "--layers=false", "--format", "docker", "--network", "host", *ULIMITS]
    build += build_arguments(dict(os.environ))
    build += ["--build-arg", f"BASE={base}", "-f", "deploy/Dockerfile", "-t", name, str(ROOT)]
    engine.run(build, timeout=600)
    try:
        yield name
    finally:
        engine.run(["rmi", "--force", name], check=False)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but {reason}")
    pytest.skip(reason)


def test_the_image_runs_as_a_non_root_user_with_one_volume_and_a_health_check(
    engine: Engine, image: str
) -> None:
    inspected = json.loads(engine.run(["image", "inspect", image]).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10001:10001"
    assert list(config["Volumes"]) == ["/data"]
    assert list(config["ExposedPorts"]) == ["8080/tcp"]
    assert config["Entrypoint"] == ["postwright", "serve", "--host", "0.0.0.0"]
    assert "/healthz" in " ".join(inspected["Healthcheck"]["Test"])
    # Only the runtime dependencies: no test or lint tool reached the image.
    script = "import importlib.util as u; print([m for m in ('pytest', 'mypy') if u.find_spec(m)])"
    found = engine.run(
        [
            "run",
            "--rm",
            *ULIMITS,
            "--network",
            "none",
            "--entrypoint",
            "python3",
            image,
            "-c",
            script,
        ]
    )
    assert found.stdout.strip() == "[]"


def test_serve_refuses_a_network_address_without_api_keys(engine: Engine, image: str) -> None:
    done = engine.run(["run", "--rm", *ULIMITS, "--network", "none", image], check=False)
    assert done.returncode == 2
    assert "no API keys are configured" in done.stderr


def test_the_container_serves_takes_an_event_and_sends(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    repo = write_repo(tmp_path / "repo", {"welcome": WELCOME})
    repo.chmod(0o755)
    port = _free_port()
    name = f"postwright-test-{uuid.uuid4().hex[:12]}"
    run = ["run", "--detach", "--name", name, *ULIMITS, "--publish", f"127.0.0.1:{port}:8080"]
    # As deploy/kubernetes runs it: read-only root (a tmpfs /tmp), no capabilities.
    run += ["--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
    run += ["--security-opt", "no-new-privileges"]
    run += ["--env", f"POSTWRIGHT_API_KEYS={KEY}", "--env", "POSTWRIGHT_PUBLIC_URL=https://pw.test"]
    run += ["--volume", f"{repo}:/data/repo:ro", image]
    engine.run(run)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(
            base_url=base, timeout=5, headers={"Authorization": f"Bearer {KEY}"}
        ) as client:
            _wait_until(lambda: _answers(client, "/readyz"), "/readyz answers 200")
            assert client.get("/healthz").json() == {"status": "ok"}
            event = {"id": "c-1", "type": "signup", "subscriber": {"email": "ada@example.org"}}
            posted = client.post("/v1/events", json=event)
            assert posted.status_code == 202, posted.text
            _wait_until(lambda: _sent(client), "the welcome email in the outbox")
        checked = engine.run(["healthcheck", "run", name], check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert engine.run(["exec", name, "id", "-u"]).stdout.strip() == "10001"
        # The database lives in the volume, not in the read-only repository, and the online
        # backup of docs/deploy.md copies it while the runner serves.
        assert "postwright.db" in engine.run(["exec", name, "ls", "/data"]).stdout.split()
        engine.run(["exec", name, "python3", "-c", BACKUP])
        count = "import sqlite3; print(sqlite3.connect('/data/backup.db').execute("
        count += "'SELECT count(*) FROM messages').fetchone()[0])"
        assert engine.run(["exec", name, "python3", "-c", count]).stdout.strip() == "1"
        stopped = engine.run(["stop", "--time", "20", name], timeout=60)
        assert stopped.returncode == 0
        state = json.loads(engine.run(["inspect", name]).stdout)[0]["State"]
        assert state["ExitCode"] == 0  # SIGTERM is a clean stop
    finally:
        engine.run(["rm", "--force", "--volumes", name], check=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


def _sent(client: httpx.Client) -> bool:
    messages = client.get("/v1/outbox").json()["messages"]
    return any("ada@example.org" in json.dumps(message) for message in messages)


def _wait_until(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)  # a real container starting: polling, bounded by WAIT_SECONDS
    raise AssertionError(f"not within {WAIT_SECONDS:.0f} s: {what}")


def test_the_build_reaches_pypi_the_way_this_machine_does(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    environ = {"HTTPS_PROXY": "http://proxy.test:3128", "PIP_CERT": str(bundle), "HOME": "/x"}
    assert build_arguments(environ) == [
        "--build-arg",
        "HTTPS_PROXY=http://proxy.test:3128",
        "--secret",
        f"id=pip_cert,src={bundle}",
    ]
    assert build_arguments({"PIP_CERT": str(tmp_path / "missing.crt")}) == []


def test_without_an_engine_the_reason_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.container.shutil.which", lambda name: None)
    with pytest.raises(EngineUnavailable, match=r"podman is not installed \(Debian package"):
        start_engine()
    monkeypatch.setenv(REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match="POSTWRIGHT_REQUIRE_CONTAINER=1 but"):
        _skip_or_fail("no engine")
