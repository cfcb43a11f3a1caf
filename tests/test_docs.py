"""The README says only what is true: every ```console block is run, its output compared byte for byte.

A console block holds commands (`$ ...`) each followed by what a terminal shows (standard
output and standard error as one stream).  They run in a scratch folder holding a copy of
totaler.py and events.csv, where `python3` is this interpreter and `totaler` runs the copy.
A block that asks `localhost:8000` gets a server of events.csv on a free port in its place.
Blocks in ```sh (Docker, pip, a cluster) are not run.  `python tests/test_docs.py` writes the
outputs the commands give now into README.md, for a person to read over before committing.

The examples of `--help` are run too, and .ci/run must hold the README's test command.
"""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```console\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"


def examples(text: str) -> list[tuple[str, str]]:
    """Every (command, output) of the console blocks of TEXT, in order."""
    found = []
    for block in BLOCK.findall(text):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            found.append((command, output))
    return found


def scratch(folder: Path) -> dict[str, str]:
    """FOLDER made ready for the README's commands; the environment they run in."""
    shutil.copy(ROOT / "totaler.py", folder)
    shutil.copy(ROOT / "events.csv", folder)
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    (bin_dir / "totaler").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{folder}/totaler.py" "$@"\n')
    (bin_dir / "totaler").chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", COLUMNS="100")


def run(command: str, folder: Path, env: dict[str, str], port: int | None = None) -> str:
    """What a terminal shows for COMMAND run in FOLDER (localhost:8000 being PORT, if given)."""
    if port is not None:
        command = command.replace("localhost:8000", f"localhost:{port}")
    done = subprocess.run(
        ["bash", "-c", command], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120
    )
    return done.stdout.decode()


class ServerOnce:
    """A server of events.csv started the first time a command needs one."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.server = folder, None

    def port(self) -> int:
        if self.server is None:
            from test_http import Server

            self.server = Server(self.folder / "events.csv", "--quiet", "--workers", "1")
        return self.server.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[tuple[Path, dict[str, str], ServerOnce]]:
    folder = tmp_path_factory.mktemp("readme")
    env = scratch(folder)
    server = ServerOnce(folder)
    yield folder, env, server
    server.stop()


README_EXAMPLES = examples(README.read_text())


@pytest.mark.parametrize("command, output", README_EXAMPLES, ids=[c[:60] for c, _ in README_EXAMPLES])
def test_a_readme_example_prints_what_the_readme_shows(sandbox, command: str, output: str) -> None:
    folder, env, server = sandbox
    port = server.port() if "localhost:8000" in command else None
    assert run(command, folder, env, port) == output


def test_the_readme_has_examples_and_its_test_command_is_what_ci_runs() -> None:
    assert len(README_EXAMPLES) >= 10
    assert TEST_COMMAND in README.read_text()
    assert TEST_COMMAND in (ROOT / ".ci" / "run").read_text().splitlines()


def help_examples() -> list[str]:
    """The commands under 'examples:' in --help (all but --serve, which does not end)."""
    import totaler

    lines = totaler._EXAMPLES.split("\n\n")[0].splitlines()[1:]
    return [line.strip() for line in lines if "--serve" not in line]


@pytest.mark.parametrize("command", help_examples())
def test_every_example_of_help_runs(sandbox, command: str) -> None:
    folder, env, _ = sandbox
    done = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stderr == b"", (command, done.stderr)
    assert done.stdout.startswith((b"Input file: ", b"{", b"bucket,"))


def write_outputs() -> None:
    """Put into README.md what each console command prints now."""
    import tempfile

    text = README.read_text()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env, server = scratch(folder), ServerOnce(folder)
        try:

            def rewrite(block: re.Match) -> str:
                chunks = re.split(r"^\$ ", block.group(1), flags=re.MULTILINE)[1:]
                commands = [chunk.partition("\n")[0] for chunk in chunks]
                outputs = [run(c, folder, env, server.port() if "localhost:8000" in c else None) for c in commands]
                return "```console\n" + "".join(f"$ {c}\n{o}" for c, o in zip(commands, outputs, strict=True)) + "```\n"

            README.write_text(BLOCK.sub(rewrite, text))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    write_outputs()
