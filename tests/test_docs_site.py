"""The documentation site: mkdocs.yml over docs/ builds with ``--strict`` (a link to a page, an
anchor or a repository file that does not exist fails it), every page of docs/ is in its nav, and
the strictness is real: a copy of the docs with one bad link does not build."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("mkdocs")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "mkdocs.yml"


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site), "-f", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def nav_pages(nav) -> list[str]:
    """The page files of a mkdocs nav (a list of `title: page`, `title: [sections]` or `page`)."""
    if isinstance(nav, str):
        return [] if "://" in nav else [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return [p for entry in nav for p in nav_pages(entry)]


def test_the_site_builds_strictly(tmp_path):
    result = build(CONFIG, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    site = tmp_path / "site"
    assert "user-guide/" in (site / "index.html").read_text()  # README.md is the home page, its docs/ links are pages
    assert (
        "<code>benchmarks/results/figure4-quickstart.json</code> in the repository"
        in (site / "analysis" / "index.html").read_text()
    )
    assert (site / "contributing" / "index.html").exists()


def test_every_page_of_docs_is_in_the_nav():
    nav = nav_pages(yaml.safe_load(CONFIG.read_text())["nav"])
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert [p for p in pages if p not in nav] == [], "add these pages to mkdocs.yml's nav"
    assert len(nav) == len(set(nav)), "a page is twice in the nav"


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of the repository for the site: docs/ and the site's files copied, the rest linked."""
    copy = tmp_path / "repo"
    copy.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in ("docs", "mkdocs.yml", "mkdocs_hooks.py", "README.md", "CONTRIBUTING.md"):
            (shutil.copytree if entry.is_dir() else shutil.copy)(entry, copy / entry.name)
        elif entry.name not in (".git", ".venv", "site"):
            os.symlink(entry, copy / entry.name)
    return copy


def test_the_copy_builds(repo, tmp_path):  # so that the failures below are the bad links' doing
    result = build(repo / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "link, named",
    [
        ("[a page](no-such-page.md)", "no-such-page.md"),
        ("[an anchor](distillation.md#no-such-section)", "no-such-section"),
        (
            "[a result](../benchmarks/results/no-such-file.json)",
            "no-such-file.json', which is no file or folder of the repository",
        ),
        ("[a section of the contributing guide](../CONTRIBUTING.md#no-such-part)", "no-such-part"),
    ],
)
def test_a_broken_link_fails_the_build(repo, tmp_path, link, named):
    """One bad link in docs/data.md: the strict build fails, naming the page and the link."""
    with open(repo / "docs" / "data.md", "a") as page:
        page.write(f"\nSee {link}.\n")
    result = build(repo / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "data.md" in result.stderr and named in result.stderr, result.stderr


def test_a_page_missing_from_the_nav_fails_the_build(repo, tmp_path):
    (repo / "docs" / "orphan.md").write_text("# Not in the nav\n")
    result = build(repo / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0 and "orphan.md" in result.stderr, result.stderr
