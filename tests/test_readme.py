"""The README documents what a newcomer needs, and what it documents exists (names checked against the code)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from breastclip.data.sources.csv_table import read_csv_table
from breastclip.prompts import list_banks
from breastclip.user_cache import ENV_VAR

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_cpu_only_install_is_documented():
    assert "pip install torch" in README and "--index-url https://download.pytorch.org/whl/cpu" in README


def test_csv_reader_options_match_the_reader():
    table = README[README.index("### CSV reader options"):README.index("### Split options")]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
    params = set(inspect.signature(read_csv_table).parameters) - {"path", "name", "source"}
    assert documented == params


def test_split_options_prompt_banks_and_the_cache_are_documented():
    for key in ("fractions", "seed", "keep_official", "on_leak", "group_duplicates", "[split.options]"):
        assert key in README
    banks = README[README.index("### Prompt banks"):README.index("## The cache")]
    for bank in list_banks():
        assert f"`{bank}`" in banks
    assert "templates" in banks and "[prompts]" in banks
    cache = README[README.index("## The cache"):README.index("## Errors")]
    assert f"${ENV_VAR}" in cache
    for sub in ("ls", "verify", "gc", "clear"):
        assert f"breastclip cache {sub}" in cache
