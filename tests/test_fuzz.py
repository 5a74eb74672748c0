"""Fuzzing (issue 11): random Unicode through the library and through `triage` on CSV and JSONL.

At least 10,000 strings go through normalise → segment → classify (``classify_texts``), and
10,000 rows each through ``triage_file`` on CSV and on JSONL (JSONL also with lone
surrogate escapes such as ``"\\ud800"``). Nothing may crash, and every row must come out
once, in order, with a known status. The alphabet mixes CJK text (so rows get classified)
with any code point hypothesis likes: controls, format characters, noncharacters, astral
planes. A CSV file cannot hold surrogates and one with many NULs is refused as binary (one
line, by design), so the CSV alphabet leaves those two out.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.intake.triage import classify_texts, triage_file
from pipeline.model.registry import Registry
from pipeline.paths import Home

STATUSES = {"ok", "empty", "no_text", "not_chinese", "too_short", "too_long_truncated", "garbled", "error"}
HANZI = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
ANY = st.characters(exclude_categories=())  # surrogates, controls, unassigned: everything
PHRASES = st.sampled_from(["收受购物卡", "违规提拔", "整改不到位", "巡察", "党组会议", "，", "。", "\r\n", " ", "=", "\t"])


def texts(chars: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    parts = st.one_of(HANZI, chars, PHRASES, st.text(chars, max_size=4))
    return st.lists(parts, max_size=60).map("".join)


BATCH = 50
EXAMPLES = 200  # 200 × 50 = 10,000 strings
SETTINGS = {"deadline": None, "derandomize": True, "database": None,
            "suppress_health_check": list(HealthCheck)}
CSV_UNWRITABLE = re.compile("[\x00\ud800-\udfff]")


@pytest.fixture(scope="module")
def model(trained_home: Home):
    return Registry(trained_home.models).load().model


def _check_output(rows: list[dict[str, str]], n: int) -> None:
    assert [r["id"].lstrip("'") for r in rows] == [f"R{i}" for i in range(n)], "every row out, once, in order"
    statuses = Counter(r["status"] for r in rows)
    assert set(statuses) <= STATUSES and not statuses["error"], statuses


def test_fuzz_library_then_triage_csv_and_jsonl(model, model_home, tmp_path):
    """10,000 hypothesis strings through classify_texts (50 per example, shrinkable), then
    the same 10,000 as the rows of one CSV file and one JSONL file through triage_file."""
    collected: list[str] = []

    @settings(max_examples=EXAMPLES, **SETTINGS)
    @given(batch=st.lists(texts(ANY), min_size=BATCH, max_size=BATCH))
    def library(batch: list[str]) -> None:
        results = classify_texts(model, batch, units=batch[::-1])
        assert len(results) == len(batch)
        for result in results:
            assert result.status in STATUSES and result.status != "error", result
            assert bool(result.attention) == (result.status in ("ok", "too_short", "too_long_truncated"))
        collected.extend(batch)

    library()
    assert len(collected) >= 10_000

    source = tmp_path / "fuzz.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "被巡察单位", "线索内容"])
        for i, text in enumerate(collected):
            text = CSV_UNWRITABLE.sub("", text)
            writer.writerow([f"R{i}", text[:20], text])
    summary = triage_file(model_home, source, tmp_path / "fuzz.out.csv", workers=1)
    out = (tmp_path / "fuzz.out.csv").read_bytes().decode("utf-8-sig")
    _check_output(list(csv.DictReader(io.StringIO(out, newline=""))), len(collected))
    assert summary.rows == len(collected)

    source = tmp_path / "fuzz.jsonl"
    with open(source, "w", encoding="utf-8") as handle:
        for i, text in enumerate(collected):
            surrogate = any("\ud800" <= ch <= "\udfff" for ch in text)
            record = {"id": f"R{i}", "unit": text[:20], "text": text}
            handle.write(json.dumps(record, ensure_ascii=surrogate or i % 2 == 0) + "\n")
    summary = triage_file(model_home, source, tmp_path / "fuzz.out.jsonl", workers=1)
    rows = [json.loads(line) for line in (tmp_path / "fuzz.out.jsonl").read_text(encoding="utf-8").split("\n") if line]
    _check_output(rows, len(collected))
    assert summary.rows == len(collected)
    assert sum(CSV_UNWRITABLE.search(t) is not None for t in collected) > 0, "surrogates and NULs were tried"
