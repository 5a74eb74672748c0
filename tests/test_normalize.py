import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.text.normalize import common_share, fold, han_count, is_traditional, normalize


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


# -- the faster forms of fold and the garbled check give what the plain ones gave ------

_WIDTH_MIX = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0xFF00, max_codepoint=0xFFEF),  # full- and half-width forms
        st.characters(min_codepoint=0x3000, max_codepoint=0x303F),  # CJK symbols, ideographic space
        st.characters(min_codepoint=0x0300, max_codepoint=0x036F),  # combining marks
        st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),  # Hangul jamo (compose)
        st.sampled_from("监测收受红包舉報ＡＢＣ１２３，。：；！？（）ｶﾞﾟ･ㄱ가각e\u0301"),
        st.characters(),
    ),
    max_size=40,
)


@settings(max_examples=2000, deadline=None)
@given(_WIDTH_MIX)
def test_fold_is_plain_nfkc_then_cleaning(text):
    """fold replaces full-width forms before NFKC (for speed); NFKC must be unchanged by it."""
    import unicodedata

    from pipeline.text import normalize as module

    expected = module._SPACE.sub(" ", module._INVISIBLE.sub("", unicodedata.normalize("NFKC", text))).strip()
    assert fold(text) == expected


def _plain_common_share(normalized, at_most=400):
    """The garbled check as first written: list the ideographs, count the common ones."""
    from pipeline.text import normalize as module

    hans = "".join(module._HAN.findall(normalized[: 3 * at_most])[:at_most])
    if not hans:
        return 1.0, 0
    return len(module._COMMON_RE.findall(hans)) / len(hans), len(hans)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.one_of(st.sampled_from("的局长收受鍙嶆槧鐜淇濆眬灞€闀㐀龥豈, a1"),
                                  st.characters(min_codepoint=0x3400, max_codepoint=0xFAFF)), max_size=60),
       st.integers(min_value=1, max_value=30))
def test_common_share_counts_as_the_plain_form(text, at_most):
    assert common_share(text, at_most) == _plain_common_share(text, at_most)


def test_common_share_on_long_texts():
    long = "局长收受红包鍙嶆槧鐜淇" * 200  # more ideographs than are looked at
    assert common_share(long) == _plain_common_share(long)
    assert common_share(normalize("舉報" * 700)) == _plain_common_share(normalize("舉報" * 700))
