"""The integration pages' code excerpts are lines of the examples their tests run."""

from __future__ import annotations

import re

import pytest

from .examples import DOCS


@pytest.mark.parametrize("name", ["lightning", "torchjd"])
def test_every_excerpt_is_in_the_tested_example(name):
    page = (DOCS / f"{name}.md").read_text()
    example = {line.strip() for line in (DOCS / f"{name}_example.py").read_text().splitlines()}
    excerpts = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert excerpts
    missing = [line for block in excerpts for line in block.splitlines() if line.strip() not in example]
    assert not missing, f"docs/integrations/{name}.md shows lines that are not in {name}_example.py: {missing}"
    assert f"docs/integrations/{name}_example.py:problem" in page
