"""A keyword-rule baseline written from the labeling guide (data/LABELING.md).

It is what a careful person with a find function would do: area by the guide's
vocabulary, attention by specificity markers (a named person, an amount, a date, a plate)
next to misconduct words, and by the language of views and suggestions. The learned model
must beat it; if it did not, the model would not be worth its opacity.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..text.features import Prepared

AREA_KEYWORDS: dict[str, tuple[str, ...]] = {
    "rectification": (
        "整改", "反馈", "上一轮", "上轮", "销号", "台账", "回潮", "反弹", "督察交办", "整改方案", "虚假整改",
        "敷衍整改", "巡视", "审计指出",
    ),
    "organization": (
        "提拔", "选人用人", "干部", "任前公示", "民主推荐", "考察", "档案", "超职数", "试用期", "三会一课",
        "组织生活", "党费", "发展党员", "民主集中制", "一把手", "三重一大", "集体研究", "个人有关事项",
        "兼职", "借调", "出国", "人才", "班子",
    ),
    "discipline": (
        "八项规定", "四风", "收受", "红包", "礼金", "购物卡", "吃喝", "宴请", "公款", "公车私用", "报销",
        "发票", "小金库", "津补贴", "回扣", "好处费", "贿", "挪用", "套取", "虚报", "接待", "主体责任",
        "监督责任", "一岗双责", "形式主义", "官僚主义", "赌博", "吃空饷",
    ),
    "policy": (
        "污染", "排放", "超标", "监测", "散乱污", "执法", "环评", "审批", "排污许可", "营商环境", "生态文明",
        "督察", "在线监控", "偷排", "关停", "治理", "项目",
    ),
}

SPECIFIC_MARKERS = ("<人名>", "<金额>", "<日期>", "<车牌>", "<电话>", "<编号>", "<证件号>")
MISCONDUCT = (
    "收受", "索要", "贿", "回扣", "好处费", "挪用", "套取", "虚报", "宴请", "吃喝", "公车私用", "篡改",
    "造假", "伪造", "突击提拔", "违规提拔", "插手", "打招呼", "说情", "包庇", "充当保护伞", "报销",
    "红包", "礼金", "购物卡", "赌博",
)
VIEW_WORDS = ("建议", "希望", "呼吁", "意见", "认为", "不知", "听说", "已经处理", "已处理", "已查处", "答复")


def keyword_predict(docs: Sequence[Prepared]) -> dict[str, list[str]]:
    """Predict both heads by the rules above; ties go to the guide's order of areas."""
    attention, area = [], []
    for doc in docs:
        text, tokens = doc.text, set(doc.tokens)
        scores = {a: sum(text.count(k) for k in kws) for a, kws in AREA_KEYWORDS.items()}
        best = max(scores.values())
        area.append(next(a for a in AREA_KEYWORDS if scores[a] == best) if best else "policy")
        specific = sum(m in tokens for m in SPECIFIC_MARKERS)
        wrong = any(k in text for k in MISCONDUCT)
        if specific >= 2 and wrong:
            attention.append("further")
        elif any(k in text for k in VIEW_WORDS) and not wrong:
            attention.append("reference")
        else:
            attention.append("aware")
    return {"attention": attention, "area": area}
