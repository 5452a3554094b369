"""The README's examples between `<!-- contract -->` and `<!-- /contract -->`, run verbatim with bash
against a real gunicorn, on SQLite and MySQL. People copy them, so they must work as written.

The fenced ```sh blocks run in order in one shell (`set -euo pipefail`, so a failing command fails the
test; the examples use `curl --fail-with-body` where an HTTP error would be a failure). Each `# => …`
line is what the command before it prints: the output must show those lines in order, `…` matching
anything.
"""
import os
import re
import subprocess
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
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
    assert len(blocks) >= 3
    assert len(expectations(blocks)) >= 10


def test_readme_examples_run_verbatim(live_server, tmp_path):
    blocks = contract_blocks()
    script = "set -euo pipefail\n" + "\n".join(blocks)
    run = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env={**os.environ, "B": live_server.url},
        capture_output=True, text=True, timeout=120,
    )
    output = run.stdout
    assert run.returncode == 0, f"exit {run.returncode}\n--- stdout ---\n{output}\n--- stderr ---\n{run.stderr}"
    position = 0
    for pattern in expectations(blocks):
        found = pattern.search(output, position)
        assert found, f"not printed (after offset {position}): {pattern.pattern}\n--- stdout ---\n{output}"
        position = found.end()
