"""The README's Python snippets run as written, each on its own."""

import pathlib

import pytest

from tests.helpers import python_blocks, run_block

BLOCKS = python_blocks(pathlib.Path(__file__).resolve().parent.parent / "README.md")


def test_readme_has_snippets():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_snippet_runs(block):
    if block.skip:
        pytest.skip("marked <!-- no-test --> in the README")
    run_block(block, {})
