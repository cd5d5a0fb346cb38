"""A container engine for the image test (tests/test_container.py): podman, a Debian base made
locally, and the work-arounds this kind of machine needs.

No public registry is reachable here, so the base image (`BASE` of deploy/Dockerfile) is made
from Debian packages with `mmdebstrap` through the machine's own apt sources and imported with
`podman import`; the tarball is cached under ~/.cache/postwright-test-base, keyed by a hash of
everything that shapes it, so later runs skip the minute it takes.

Machines whose cgroups are mounted in hybrid mode (v1 controllers plus a v2 hierarchy holding
a controller) make crun refuse every container. There every podman call runs inside one
private mount namespace where an empty tmpfs hides the v2 hierarchy: crun then sees plain v1.
One namespace for the whole test, kept by a sleeping process, because podman mounts network
namespaces under /run/netns and later calls must see them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REQUIRE_VARIABLE = "POSTWRIGHT_REQUIRE_CONTAINER"
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
CACHE = Path.home() / ".cache" / "postwright-test-base"
UNIFIED = Path("/sys/fs/cgroup/unified")
PACKAGES = "python3,python3-venv,ca-certificates,git,openssh-client"
# The runner's own file-descriptor and process limits: podman would otherwise ask crun for
# higher ones, which a container without CAP_SYS_RESOURCE (like this sandbox) may not set.
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")


class EngineUnavailable(Exception):
    """No container can run here; the message says why."""


def mmdebstrap_command(target: Path) -> list[str]:
    """The command that makes the base tarball: bookworm, Python, git, the host's apt sources."""
    sources = [str(SOURCES)] if SOURCES.is_file() else []
    return [
        "mmdebstrap",
        "--mode=root" if os.geteuid() == 0 else "--mode=unshare",
        "--variant=minbase",
        f"--include={PACKAGES}",
        # Snapshot mirrors serve Release files whose Valid-Until has passed.
        "--aptopt=Acquire::Check-Valid-Until false",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "bookworm",
        str(target),
        *sources,
    ]


def base_key() -> str:
    """A hash of what shapes the base: the command and the apt sources it reads."""
    digest = hashlib.sha256(" ".join(mmdebstrap_command(Path("-"))).encode())
    if SOURCES.is_file():
        digest.update(SOURCES.read_bytes())
    return digest.hexdigest()[:16]


def hybrid_cgroups() -> bool:
    """Whether crun would refuse containers: a v2 hierarchy beside v1 that holds controllers."""
    controllers = UNIFIED / "cgroup.controllers"
    try:
        return controllers.read_text().strip() != ""
    except OSError:
        return False


@dataclass
class Engine:
    """podman, called directly or inside the namespace kept by `keeper`."""

    keeper: subprocess.Popen[bytes] | None = None

    def command(self, args: Sequence[str]) -> list[str]:
        """The argv running `podman ARGS` here."""
        if self.keeper is None:
            return ["podman", *args]
        return ["nsenter", f"--target={self.keeper.pid}", "--mount", "podman", *args]

    def run(
        self, args: Sequence[str], timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run podman; on failure with `check`, raise naming the command and its output."""
        done = subprocess.run(
            self.command(args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
        return done

    def close(self) -> None:
        """Stop the namespace keeper (the containers in it must be gone already)."""
        if self.keeper is not None:
            self.keeper.kill()
            self.keeper.wait(timeout=10)
            self.keeper = None


def start_engine() -> Engine:
    """An engine that can run containers, or EngineUnavailable saying why not."""
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            raise EngineUnavailable(f"{tool} is not installed (Debian package {tool})")
    engine = Engine()
    if hybrid_cgroups():
        if shutil.which("unshare") is None or shutil.which("nsenter") is None:
            raise EngineUnavailable("hybrid cgroups and no unshare/nsenter to work around them")
        script = "mount -t tmpfs -o size=64k none /sys/fs/cgroup/unified && exec sleep 3600"
        engine.keeper = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        )
    return engine


def base_image(engine: Engine) -> str:
    """The Debian base, imported once per key; the tarball cached between runs."""
    key = base_key()
    name = f"localhost/postwright-test-base:{key}"
    if engine.run(["image", "exists", name], check=False).returncode == 0:
        return name
    tarball = CACHE / f"{key}.tar"
    if not tarball.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = CACHE / f"{key}.{uuid.uuid4().hex}.partial.tar"
        made = subprocess.run(
            mmdebstrap_command(partial), capture_output=True, text=True, timeout=600, check=False
        )
        if made.returncode != 0:
            partial.unlink(missing_ok=True)
            raise EngineUnavailable(f"mmdebstrap could not make the base: {made.stderr[-800:]}")
        partial.replace(tarball)
    engine.run(["import", str(tarball), name], timeout=300)
    return name


def probe(engine: Engine, image: str) -> None:
    """Run one container; EngineUnavailable with podman's own words when that fails."""
    done = engine.run(
        ["run", "--rm", *ULIMITS, "--network", "none", image, "python3", "-c", "print('ok')"],
        check=False,
    )
    if done.returncode != 0 or done.stdout.strip() != "ok":
        raise EngineUnavailable(f"podman cannot run a container here: {done.stderr.strip()}")


def build_arguments(environ: dict[str, str]) -> list[str]:
    """How pip in the build reaches PyPI the way this machine does: proxies, index, CA bundle."""
    args: list[str] = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_INDEX_URL"):
        for variant in (name, name.lower()):
            if environ.get(variant):
                args += ["--build-arg", f"{variant}={environ[variant]}"]
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        bundle = environ.get(name)
        if bundle and Path(bundle).is_file():
            args += ["--secret", f"id=pip_cert,src={bundle}"]
            break
    return args
