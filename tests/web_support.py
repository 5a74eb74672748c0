"""A small triaged store for the review page's tests (library, HTTP and browser).

Eight clues from two units, Simplified and Traditional, triaged by the session's trained
model; three reviewers, one of whom (zhang) recused from 东城分局 in either script.
"""

from __future__ import annotations

import csv
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pipeline.intake.triage import triage_file
from pipeline.paths import Home
from pipeline.review.review import add_reviewer, clue_states
from pipeline.store.store import connect

DONGCHENG_T, DONGCHENG_S, NANHU = "某市生態環境局東城分局", "某市生态环境局东城分局", "某市生态环境局南湖县分局"
CLUES = [
    ("W01", DONGCHENG_T, "反映東城分局副局長王某2023年春節前收受轄區企業購物卡2萬元，並為該企業環評驗收「開綠燈」。"),
    ("W02", DONGCHENG_S, "举报局办公室主任李某在任职不满两年的情况下被突击提拔，其档案中出生日期存在涂改。"),
    ("W03", NANHU, "部分乡镇对“散乱污”企业整治态度不坚决，存在关停后又死灰复燃的情况。"),
    ("W04", "某市生態環境局南湖縣分局", "上一輪巡察反饋的公務用車管理問題，整改臺賬只有表態沒有措施，至今未見成效。"),
    ("W05", NANHU, "建议加强基层环境监测站人员培训，提高监测数据质量。"),
    ("W06", DONGCHENG_S, "干部反映近年来年轻干部交流锻炼机会偏少。"),
    ("W07", NANHU, "收红包"),  # too short: always needs review
    ("W08", "某市生態環境局南湖縣分局", "談話中有同志反映，分局黨組會議記錄不全，「三重一大」事項未經集體研究就由主要負責人拍板。"),
]
DONGCHENG_IDS = {"W01", "W02", "W06"}
NANHU_IDS = {"W03", "W04", "W05", "W07", "W08"}


@dataclass
class Store:
    home: Home
    run: int
    db: sqlite3.Connection
    keys: dict[str, str]  # clue id -> clue key


def write_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["编号", "被巡察单位", "线索内容"])
        writer.writerows(rows)
    return path


def triaged_store(home: Home, folder: Path) -> Store:
    """Triage :data:`CLUES` into ``home`` (which holds a model) and add the reviewers."""
    source = write_csv(folder / "web_clues.csv", CLUES)
    summary = triage_file(home, source, folder / "web_clues.triaged.csv", workers=1)
    db = connect(home.db_path)
    add_reviewer(db, "zhang", "张三", [DONGCHENG_S])
    add_reviewer(db, "li", "李四")
    add_reviewer(db, "wang", "王五")
    keys = {s.clue_id: s.clue_key for s in clue_states(db, summary.run_id)}
    return Store(home, summary.run_id, db, keys)
