"""Check new clue batches against each other and the corpus before they are merged.

Writers of new clues put them in data/batches/NAME.jsonl (fields as in data/clues.jsonl,
without id and split) and run::

    python scripts/corpus_check.py data/batches/batch_03.jsonl   # one batch against everything
    python scripts/corpus_check.py                                # the corpus and every batch

Reports: malformed lines, unknown labels, lengths outside 15-1600 characters, a missing `register` or
(for grounded registers) `source_url` in wave batches (wave 2 on), a `script`
field that disagrees with the text, any 20-character substring shared by two texts
(compared after NFKC + Traditional->Simplified), and pairs whose character 5-gram Jaccard
similarity is 0.5 or more. Exit code 1 when anything is reported.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np
import opencc
from scipy import sparse

ATTENTION = {"further", "aware", "reference"}
AREA = {"policy", "discipline", "organization", "rectification"}
SOURCES = {"信訪舉報", "個別談話", "調閱資料", "財務審計", "職能處室", "選人用人檢查", "現場檢查"}
SCRIPTS = {"simplified", "traditional"}
# Wave 2 (issue 9): every new clue says which register it is written in; grounded ones
# name the public page whose facts they restate.
REGISTERS = {"feedback_line", "case_notice", "citizen_message", "inspection_case",
             "audit_finding", "media_report", "letter", "talk_note", "file_check",
             "finance_check", "division_lead", "selection_check", "site_check"}
GROUNDED = {"feedback_line", "case_notice", "citizen_message", "inspection_case",
            "audit_finding", "media_report"}
MAX_LEN = 1600
_T2S = opencc.OpenCC("t2s")
_S2T = opencc.OpenCC("s2t")


def norm(text: str) -> str:
    return _T2S.convert(unicodedata.normalize("NFKC", text))


def load(path: Path) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON ({exc.msg})")
            continue
        obj["_where"] = where
        text = obj.get("text", "")
        if obj.get("attention") not in ATTENTION:
            problems.append(f"{where}: attention {obj.get('attention')!r}")
        if obj.get("area") not in AREA:
            problems.append(f"{where}: area {obj.get('area')!r}")
        if obj.get("source") not in SOURCES:
            problems.append(f"{where}: source {obj.get('source')!r}")
        if obj.get("script") not in SCRIPTS:
            problems.append(f"{where}: script {obj.get('script')!r}")
        if not obj.get("unit"):
            problems.append(f"{where}: unit missing")
        if not 15 <= len(text) <= MAX_LEN:
            problems.append(f"{where}: length {len(text)} outside 15-{MAX_LEN}")
        if "register" in obj or path.name.startswith("wave"):
            register = obj.get("register")
            if register not in REGISTERS:
                problems.append(f"{where}: register {register!r}")
            url = obj.get("source_url") or ""
            if register in GROUNDED and not url.startswith("http"):
                problems.append(f"{where}: register {register} needs the source_url it restates")
        simplified = norm(text) == unicodedata.normalize("NFKC", text)
        if obj.get("script") == "simplified" and not simplified:
            problems.append(f"{where}: marked simplified but has Traditional characters")
        if obj.get("script") == "traditional":
            if simplified:
                problems.append(f"{where}: marked traditional but has no Traditional characters")
            changed = sum(a != b for a, b in zip(text, _S2T.convert(text), strict=False))
            if changed > 3:
                problems.append(f"{where}: marked traditional but {changed} characters are "
                                f"Simplified; write it wholly in Traditional")
        rows.append(obj)
    return rows, problems


def shared_substrings(rows: list[dict], focus: set[str] | None, k: int = 20) -> list[str]:
    seen: dict[str, str] = {}
    out = []
    reported = set()
    for r in rows:
        t = norm(r["text"])
        mine = set()
        for i in range(len(t) - k + 1):
            s = t[i : i + k]
            if s in mine:
                continue
            mine.add(s)
            other = seen.get(s)
            if other is None:
                seen[s] = r["_where"]
            elif other != r["_where"] and (other, r["_where"]) not in reported:
                if focus is None or r["_where"].split(":")[0] in focus or other.split(":")[0] in focus:
                    reported.add((other, r["_where"]))
                    out.append(f"{r['_where']} shares 20 chars with {other}: {s}")
    return out


def near_duplicates(rows: list[dict], focus: set[str] | None, threshold: float = 0.5) -> list[str]:
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for r in rows:
        t = norm(r["text"])
        grams = {vocab.setdefault(t[i : i + 5], len(vocab)) for i in range(max(len(t) - 4, 1))}
        indices.extend(sorted(grams))
        indptr.append(len(indices))
    x = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), len(vocab)))
    inter = (x @ x.T).tocoo()
    sizes = np.asarray(x.sum(axis=1)).ravel()
    out = []
    for i, j, v in zip(inter.row, inter.col, inter.data, strict=True):
        if i < j:
            jac = v / (sizes[i] + sizes[j] - v)
            if jac >= threshold:
                a, b = rows[i]["_where"], rows[j]["_where"]
                if focus is None or a.split(":")[0] in focus or b.split(":")[0] in focus:
                    out.append(f"{a} ~ {b}: 5-gram Jaccard {jac:.2f}")
    return out


def main(argv: list[str]) -> int:
    data = Path(__file__).resolve().parents[1] / "data"
    files = [p for p in [data / "clues.jsonl"] if p.exists()] + sorted((data / "batches").glob("*.jsonl"))
    focus = {Path(a).name for a in argv} or None
    rows, problems = [], []
    for f in files:
        r, p = load(f)
        rows.extend(r)
        if focus is None or f.name in focus:
            problems.extend(p)
    problems += shared_substrings(rows, focus)
    problems += near_duplicates(rows, focus)
    for p in problems:
        print(p)
    mine = [r for r in rows if focus is None or r["_where"].split(":")[0] in focus]
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in mine:
        counts[(r.get("attention"), r.get("area"))] += 1
    print(f"{len(mine)} clues checked, {len(problems)} problems")
    for key in sorted(counts, key=str):
        print(f"  {key[0]:>9} / {key[1]:<13} {counts[key]}")
    trad = sum(r.get("script") == "traditional" for r in mine)
    print(f"  traditional: {trad} ({trad / max(len(mine), 1):.0%})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
