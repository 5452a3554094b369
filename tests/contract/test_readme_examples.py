"""The README's walk-through: its examples between `<!-- contract -->` and `<!-- /contract -->`, run verbatim
with bash against a real gunicorn with the default settings, on SQLite and MySQL. People copy them, so they
must work as written, in order.

The fenced ```sh blocks run in order in one shell (`set -euo pipefail`, so a failing command fails the
test; the examples use `curl --fail-with-body` where an HTTP error would be a failure). Each `# => …`
line is what the command before it prints: the output must show those lines in order, `…` matching
anything.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import FAST_HASH, JWT_TEST_SECRET

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = re.compile(r"<!-- contract -->(.*?)<!-- /contract -->", re.DOTALL)
BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)
EXPECT = re.compile(r"^# => (.*)$", re.MULTILINE)


def contract_blocks() -> list[str]:
    sections = SECTION.findall(README.read_text())
    return [block for section in sections for block in BLOCK.findall(section)]


def expectations(blocks: list[str]) -> list[re.Pattern]:
    patterns = []
    for line in EXPECT.findall("\n".join(blocks)):
        parts = [re.escape(part) for part in line.strip().split("…")]
        patterns.append(re.compile(".*?".join(parts)))
    return patterns


def test_the_readme_has_contract_examples():
    blocks = contract_blocks()
    assert len(blocks) >= 12
    assert len(expectations(blocks)) >= 40


def test_every_other_sh_block_only_starts_something():
    """A reader copies any ```sh block: one outside the walk-through must be a `make` command of the clone
    (make run, make test, make web), never an example that nothing runs. Others take a ```console fence."""
    outside = SECTION.sub("", README.read_text())
    for block in BLOCK.findall(outside):
        commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
        assert commands and all(line.startswith("make ") for line in commands), block


def test_readme_examples_run_verbatim(make_live_server, backend, database_urls, storage_settings, tmp_path):
    # The walk-through runs in the clone's folder: its console commands are `.venv/bin/flask --app wsgi`, and
    # the server keeps its messages under instance/mail/ (MAIL_URL=log, the default). Here that folder is made
    # for the test: the interpreter's environment as .venv, the app's modules on PYTHONPATH, the server's
    # instance/ inside it. Nothing else may appear in it: scratch files belong in temporary folders.
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(sys.prefix)
    # The server and the console commands share every setting, as they do in a clone with its .env. Rate
    # limits stay on, as with `make run`: the walk-through must fit inside them.
    settings = {
        "DATABASE_URL": database_urls[backend], "JWT_SECRET": JWT_TEST_SECRET, **storage_settings,
        "INSTANCE_DIR": str(clone / "instance"), "DOTENV_PATH": str(tmp_path / "no.env"),
        "RATELIMIT_ENABLED": "true", **{name: str(value) for name, value in FAST_HASH.items()},
    }
    server = make_live_server(**settings)
    blocks = contract_blocks()
    script = "set -euo pipefail\n" + "\n".join(blocks)
    run = subprocess.run(
        ["bash", "-c", script], cwd=clone, stdin=subprocess.DEVNULL,
        env={**os.environ, **settings, "B": server.url, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=180,
    )
    output = run.stdout
    assert run.returncode == 0, f"exit {run.returncode}\n--- stdout ---\n{output}\n--- stderr ---\n{run.stderr}"
    position = 0
    for pattern in expectations(blocks):
        found = pattern.search(output, position)
        assert found, f"not printed (after offset {position}): {pattern.pattern}\n--- stdout ---\n{output}"
        position = found.end()
    assert sorted(path.name for path in clone.iterdir()) == [".venv", "instance"]
