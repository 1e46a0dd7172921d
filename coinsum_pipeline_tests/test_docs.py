"""The README and docs/ say what is true: a front door of at most 8 KB with a map of docs/, links
that lead somewhere, paths that exist, commands that parse as written (the README's three run),
and no file that names a path outside the repository."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from coinsum_pipeline.cli import build_parser
from coinsum_pipeline.okx.fake import FakeOKX

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def repository_files() -> list[Path]:
    """The repository's files: git's list in a clone, else every file outside what is made."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    )
    if listed.returncode == 0:
        return [ROOT / name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]
    made = {".venv", ".git", "data", ".dagster_home", ".demo", "test-artifacts"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not made & set(p.parts)]


def anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives ``page``."""
    text = FENCE.sub("", page.read_text())
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", text, re.M)
    }


def commands(pages: list[Path]) -> list[tuple[Path, str]]:
    """Each ``coinsum …`` command in the pages' shell blocks (a line that runs it, settings before
    it allowed), without its comment."""
    found = []
    for page in pages:
        for language, block in FENCE.findall(page.read_text()):
            if language != "bash":
                continue
            for line in block.splitlines():
                line = re.sub(r"(^|\s)#.*$", "", line)  # a comment
                command = re.match(r"\s*(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?coinsum (\S.*)$", line)
                if command:
                    found.append((page, command.group(1).strip()))
    return found


def test_no_file_names_a_path_outside_the_repository() -> None:
    """The folder the project was first built beside (its rules, its candles) is not in a clone."""
    beside = "shared"  # spelled apart, so this file does not name it either
    outside = re.compile(rf"\.\./{beside}|{beside}/okx-real|{beside}/SPEC")
    named = [
        str(path.relative_to(ROOT))
        for path in repository_files()
        if path.suffix not in {".png", ".gz", ".duckdb"}
        and outside.search(path.read_text(encoding="utf-8", errors="ignore"))
    ]
    assert named == []


def test_the_readme_is_a_front_door_with_a_map_of_the_docs() -> None:
    text = README.read_text()
    assert len(text.encode()) <= 8000
    linked = {Path(target).name for target in LINK.findall(text)}
    assert {page.name for page in PAGES[1:]} <= linked, "every page of docs/ is on the map"
    assert "scripts/start" in text and "scripts/test" in text


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"https?://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_repository_path_the_page_names_exists(page: Path) -> None:
    named = re.findall(
        r"`((?:coinsum_pipeline|coinsum_pipeline_tests|bench|scripts|deploy|docs)/[\w./*-]*)`",
        page.read_text(),
    )
    missing = [path for path in named if not list(ROOT.glob(path.rstrip("/")))]
    assert missing == []


def test_every_coinsum_command_in_the_readme_and_docs_parses_as_written() -> None:
    found = commands(PAGES)
    assert len(found) >= 10, "the pages' commands are found"
    parser = build_parser()
    for page, command in found:
        words = [w for w in shlex.split(command) if w != "\\"]
        try:
            args, extra = parser.parse_known_args(words)
        except SystemExit:
            pytest.fail(f"{page.name}: coinsum {command}: does not parse")
        assert not extra or args.passes_on, f"{page.name}: coinsum {command}: unknown {extra}"


@pytest.mark.slow
def test_the_readmes_three_commands_run_as_written(tmp_path: Path) -> None:
    """The backfill of the first user's 14 days, the status, the query: run in a shell as the
    README writes them, against the stand-in exchange, into a new database."""
    (block,) = [b for lang, b in FENCE.findall(README.read_text()) if "coinsum backfill" in b]
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 3
    with FakeOKX() as okx:
        env = {
            **os.environ,
            "OKX_BASE_URL": okx.url,
            "COINSUM_DB": str(tmp_path / "coinsum.duckdb"),
            "COINSUM_EXPORTS": str(tmp_path / "exports"),
            "DAGSTER_HOME": str(tmp_path / "home"),
        }
        outputs = []
        for line in lines:
            done = subprocess.run(
                line, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
            )
            assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            outputs.append(done.stdout)
    backfill, status, query = outputs
    assert "18144 values, 672 sums, 0 missing" in backfill
    assert "14 day(s); 672 of 672 stored slots complete" in status
    assert query.count("\n") == 1 + 48, "a header and the day's 48 slots"
