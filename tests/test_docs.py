"""The documentation site (mkdocs.yml, docs/): it builds, its code runs, it covers the API.

* ``mkdocs build --strict`` succeeds (offline): no warning, no broken link, no
  docstring that the reference generator (mkdocstrings, griffe) rejects.
* Every ```python block of docs/ runs; a page's blocks run in order in one
  namespace, so a page may build on its earlier blocks. ``<!-- no-test -->`` on
  the line before a fence shows a block without running it.
* The code blocks are ruff-format clean (as the README's, tests/test_lint.py).
* Every name in the ``__all__`` of ``jaxrnn`` and of each public submodule has a
  ``::: module.name`` entry in docs/api/, and every page of docs/ is in the nav.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

import jaxrnn
from tests.helpers import python_blocks, run_block

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_ext" not in p.relative_to(DOCS).parts)
PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]
ENTRY = re.compile(r"^:::[ \t]+([\w.]+)", flags=re.M)

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed (docs extra)"
)


def public_modules() -> list[str]:
    """``jaxrnn`` and every submodule with no ``_``-prefixed part in its name."""
    names = ["jaxrnn"]
    for info in pkgutil.walk_packages(jaxrnn.__path__, "jaxrnn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def reference_entries() -> set[str]:
    return {m for page in (DOCS / "api").glob("*.md") for m in ENTRY.findall(page.read_text())}


def nav_pages(nav) -> list[str]:
    """The page paths of a mkdocs ``nav`` (nested lists of ``{title: path or list}``)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in nav_pages(value)]
    return [p for item in nav for p in nav_pages(item)]


@needs_mkdocs
def test_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice about MkDocs 2.0
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "WARNING" not in res.stderr, res.stderr
    # every reference entry rendered under its own anchor
    rendered = "".join(p.read_text() for p in (site / "api").rglob("*.html"))
    missing = [e for e in sorted(reference_entries()) if f'id="{e}"' not in rendered]
    assert not missing, f"reference entries without a rendered anchor: {missing}"
    # 'Example:' would render as an admonition with the doctest as blockquotes: the
    # docstrings' section is 'Examples:' (griffe parses its >>> lines as code)
    assert "<summary>Example</summary>" not in rendered, "a docstring uses 'Example:'"
    # reStructuredText's literal-block marker is dropped (docs/_ext: LiteralBlocks)
    assert "::</p>" not in rendered and "<p>::" not in rendered, "a '::' marker was rendered"


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a snippet writes land in a temporary directory
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__docs__"}
    for block in python_blocks(page):
        if not block.skip:
            run_block(block, namespace)


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff not installed")
def test_code_blocks_are_formatted():
    res = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--diff", *map(str, PAGES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, "run `ruff format docs`:\n" + res.stdout + res.stderr


@pytest.mark.parametrize("module", public_modules())
def test_reference_lists_every_public_name(module):
    mod = importlib.import_module(module)
    assert hasattr(mod, "__all__"), f"{module} has no __all__ (its public names)"
    entries = reference_entries()
    missing = [n for n in mod.__all__ if f"{module}.{n}" not in entries]
    assert not missing, (
        f"no API reference entry for {', '.join(f'{module}.{n}' for n in missing)}: add a "
        f"line '::: {module}.<name>' to the module's page in docs/api/ (see CONTRIBUTING.md)"
    )


def test_reference_entries_are_public_names():
    public = {f"{m}.{n}" for m in public_modules() for n in importlib.import_module(m).__all__}
    pages = set(public_modules())  # `::: jaxrnn.train` with members: false, the module text
    stray = sorted(reference_entries() - public - pages)
    assert not stray, f"reference entries that are not public names: {stray}"


def test_every_page_is_in_the_nav():
    yaml = pytest.importorskip("yaml")  # PyYAML comes with mkdocs
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = nav_pages(config["nav"])
    on_disk = [str(p.relative_to(DOCS)) for p in PAGES]
    assert sorted(set(on_disk) - set(listed)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(listed) - set(on_disk)) == [], "nav entries without a page"
    assert len(listed) == len(set(listed)), "a page listed twice in the nav"
