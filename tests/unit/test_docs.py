"""The documentation: a short README, text about the product only, and a Getting started whose
commands run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# words about how the project was built rather than how to use it: a user has no issues,
# sessions or rounds of work, and such lines go stale
PROCESS_WORDS = re.compile(
    r"issues? #?\d+|closing notes?|earlier sessions?|this session|a session that|"
    r"session call|lent the|the device tool|`device` (?:tool|machine)|rounds? of work|"
    r"before this work|"
    r"carry \[|carry limit",
    re.IGNORECASE,
)
SCANNED = ("README.md", "docs", "edgead", "tests", "benchmarks", "tools", ".ci", "mkdocs.yml")


def scanned_files() -> list[Path]:
    files = []
    for name in SCANNED:
        path = REPO / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files += [
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix in {".md", ".py", ".sh", ".yml", ".yaml", ".toml", ""}
                and "__pycache__" not in p.parts
            ]
    return files


def test_no_process_words_in_readme_docs_or_code():
    this = Path(__file__).resolve()
    hits = []
    for path in scanned_files():
        if path.resolve() == this:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if PROCESS_WORDS.search(line):
                hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()[:100]}")
    assert not hits, "\n".join(hits)


def test_readme_is_a_short_front_door_with_the_ci_command():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in readme  # the test command, exactly as CI runs it
    for page in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / page).is_file(), page


def test_every_docs_page_is_in_the_site_navigation():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = [p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")]
    assert pages and all(p in nav for p in pages), [p for p in pages if p not in nav]


def getting_started_commands() -> str:
    text = (REPO / "docs" / "getting-started.md").read_text()
    block = re.search(
        r"<!-- getting-started: run -->\s*```bash\n(.*?)```\s*<!-- /getting-started: run -->",
        text,
        re.S,
    )
    assert block, "docs/getting-started.md: the marked block of commands is missing"
    return block.group(1)


@pytest.mark.slow
def test_getting_started_runs_as_written(tmp_path):
    pytest.importorskip("torch")
    demo = subprocess.run(
        [sys.executable, "-m", "edgead", "--quiet", "demo", "--workdir", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "demo passed" in demo.stdout
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", getting_started_commands()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    assert (tmp_path / "results" / "results.csv").is_file()
