import pytest

from pipeline.text.normalize import han_count, is_traditional, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Traditional → Simplified, phrase-aware
        ("舉報局辦公室主任李某被突擊提拔", "举报局办公室主任李某被突击提拔"),
        ("整改臺賬只有表態沒有措施", "整改台账只有表态没有措施"),
        ("幹部反映檔案塗改", "干部反映档案涂改"),
        # full-width digits, letters and punctuation fold to half width
        ("２０２３年收受購物卡３萬元", "2023年收受购物卡3万元"),
        ("ＶＯＣｓ超標", "VOCs超标"),
        ("懇請領導明察！", "恳请领导明察!"),
        # control characters, zero-width characters and odd whitespace
        ("公車\u200b私用\u0007問題", "公车私用问题"),
        ("  多個\t\t空格\n\n換行  ", "多个 空格 换行"),
        ("\ufeff监测数据异常", "监测数据异常"),
        # Simplified text is left as it is
        ("建议加强基层环境监测站人员培训", "建议加强基层环境监测站人员培训"),
        ("", ""),
    ],
)
def test_normalize(raw, expected):
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    ("text", "traditional"),
    [("舉報環評審批", True), ("举报环评审批", False), ("ＡＢＣ１２３", False), ("", False)],
)
def test_is_traditional(text, traditional):
    assert is_traditional(text) is traditional


def test_han_count_counts_ideographs_only():
    assert han_count("2023年abc監測。") == 3
