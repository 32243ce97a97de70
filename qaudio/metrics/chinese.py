"""Chinese text normalisation as Qwen2-Audio scores Chinese ASR, in qaudio's own code.

Qwen2-Audio's ``eval_audio/evaluate_asr.py`` normalises Chinese references and hypotheses
with ``cn_tn.TextNorm`` (SpeechIO's Chinese text normaliser) with every option off, which
leaves two steps:

1. *non-standard words* spelled out in Chinese characters, rule by rule, each rule finding
   its matches in the text as it stands and replacing the first occurrence of each match:
   dates (``2020年5月3日`` -> ``二零二零年五月三日``), money (``5元``), mobile and fixed
   phone numbers (read digit by digit), fractions (``1/2`` -> ``二分之一``), percentages
   (``50%`` -> ``百分之五十``), numbers before a measure word (``25个`` -> ``二十五个``),
   runs of 4 to 32 digits (read digit by digit), the remaining numbers (read with units), and
   ``二`` between Latin letters back to ``2``;
2. punctuation (Chinese punctuation and ASCII ``string.punctuation``) to spaces.

Text in brackets is kept (only the brackets become spaces), unlike Whisper's normalisers.
Numbers are read the way ``cn_tn`` reads them: ``10`` -> ``十``, ``200`` -> ``两百``,
``1005`` -> ``一千零五``, ``0.5`` -> ``零点五``. The parity tests check this module against
the anchor's own output on hundreds of cases (``tests/data/anchor_parity.json``).
"""

from __future__ import annotations

import re
import string

DIGITS = "零一二三四五六七八九"
LIANG = "两"  # 2 before 百, 千, 万... (not before 十)
POINT = "点"
# (power of ten, character): the units a number is read with, smallest first
UNITS = [(1, "十"), (2, "百"), (3, "千"), (4, "万")] + [(8 + 4 * i, c) for i, c in enumerate("亿兆京垓秭穰沟涧正载")]

# The measure words and currency units of the anchor's rules, in its order (order decides
# which alternative a regular expression takes).
_CURRENCY_UNITS = r"((亿|千万|百万|万|千|百)|(亿|千万|百万|万|千|百|)元|(亿|千万|百万|万|千|百|)块|角|毛|分)"
_MEASURE_WORDS = "|".join(
    [
        "匹",
        "张",
        "座",
        "回",
        "场",
        "尾",
        "条",
        "个",
        "首",
        "阙",
        "阵",
        "网",
        "炮",
        "顶",
        "丘",
        "棵",
        "只",
        "支",
        "袭",
        "辆",
        "挑",
        "担",
        "颗",
        "壳",
        "窠",
        "曲",
        "墙",
        "群",
        "腔",
        "砣",
        "座",
        "客",
        "贯",
        "扎",
        "捆",
        "刀",
        "令",
        "打",
        "手",
        "罗",
        "坡",
        "山",
        "岭",
        "江",
        "溪",
        "钟",
        "队",
        "单",
        "双",
        "对",
        "出",
        "口",
        "头",
        "脚",
        "板",
        "跳",
        "枝",
        "件",
        "贴",
        "针",
        "线",
        "管",
        "名",
        "位",
        "身",
        "堂",
        "课",
        "本",
        "页",
        "家",
        "户",
        "层",
        "丝",
        "毫",
        "厘",
        "分",
        "钱",
        "两",
        "斤",
        "担",
        "铢",
        "石",
        "钧",
        "锱",
        "忽",
        "(千|毫|微)克",
        "毫",
        "厘",
        "分",
        "寸",
        "尺",
        "丈",
        "里",
        "寻",
        "常",
        "铺",
        "程",
        "(千|分|厘|毫|微)米",
        "撮",
        "勺",
        "合",
        "升",
        "斗",
        "石",
        "盘",
        "碗",
        "碟",
        "叠",
        "桶",
        "笼",
        "盆",
        "盒",
        "杯",
        "钟",
        "斛",
        "锅",
        "簋",
        "篮",
        "盘",
        "桶",
        "罐",
        "瓶",
        "壶",
        "卮",
        "盏",
        "箩",
        "箱",
        "煲",
        "啖",
        "袋",
        "钵",
        "年",
        "月",
        "日",
        "季",
        "刻",
        "时",
        "周",
        "天",
        "秒",
        "分",
        "旬",
        "纪",
        "岁",
        "世",
        "更",
        "夜",
        "春",
        "夏",
        "秋",
        "冬",
        "代",
        "伏",
        "辈",
        "丸",
        "泡",
        "粒",
        "颗",
        "幢",
        "堆",
        "条",
        "根",
        "支",
        "道",
        "面",
        "片",
        "张",
        "颗",
        "块",
    ]
)
_NUMBER = r"(\d+(\.\d+)?)"

DATE = re.compile(r"\D+((([089]\d|(19|20)\d{2})年)?(\d{1,2}月(\d{1,2}[日号])?)?)")
MONEY = re.compile(r"\D+(" + _NUMBER + r"[多余几]?" + _CURRENCY_UNITS + r"(\d" + _CURRENCY_UNITS + r"?)?)")
MOBILE = re.compile(r"\D((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})\D")
FIXED_LINE = re.compile(r"\D((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})\D")
FRACTION = re.compile(r"(\d+/\d+)")
PERCENT = re.compile(r"(\d+(\.\d+)?%)")
COUNTED = re.compile(_NUMBER + r"[多余几]?(" + _MEASURE_WORDS + ")")
DIGIT_RUN = re.compile(r"(\d{4,32})")
CARDINAL = re.compile(_NUMBER)
LETTERS_TWO = re.compile(r"(([a-zA-Z]+)二([a-zA-Z]+))")

# Characters turned into spaces: Chinese punctuation (after the zhon project) and ASCII's.
CHINESE_PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰"
    "〾〿–—‘’‛“”„‟…‧﹏·〈〉-"
)
_TO_SPACE = str.maketrans(dict.fromkeys(CHINESE_PUNCTUATION + string.punctuation, " "))


def read_digits(digits: str) -> str:
    """``"2020"`` -> ``"二零二零"``: one character per digit (years, phone numbers, long runs)."""
    return "".join(DIGITS[int(d)] for d in digits)


def _with_units(digits: str) -> list[str | int]:
    """An integer's reading as digit characters and unit powers, ``"1005"`` -> [一, 3, 零, 五]."""
    significant = digits.lstrip("0")
    if not significant:
        return []
    if len(significant) == 1:
        # a zero is read where leading zeros were dropped ("05" -> 零五, "1005" -> 一千零五)
        lead: list[str | int] = [DIGITS[0]] if len(digits) != 1 else []
        return [*lead, DIGITS[int(significant)]]
    power = max(p for p, _ in UNITS if p < len(significant))
    head, tail = digits[:-power], significant[-power:]
    return [*_with_units(head), power, *_with_units(tail)]


def read_number(number: str, two_as_liang: bool = True) -> str:
    """A decimal number read with units: ``"25"`` -> 二十五, ``"200"`` -> 两百, ``"0.5"`` -> 零点五."""
    whole, _, fraction = number.partition(".")
    parts: list[str | int] = _with_units(whole) if len(whole) > 1 else [DIGITS[int(d)] for d in whole]
    if two_as_liang:
        # 二 becomes 两 before a unit above 十 when nothing, or a unit above 十, comes before it
        for i, part in enumerate(parts):
            before = parts[i - 1] if i > 0 else None
            after = parts[i + 1] if i + 1 < len(parts) else None
            if (
                part == DIGITS[2]
                and isinstance(after, int)
                and after != 1
                and (before is None or (isinstance(before, int) and before != 1))
            ):
                parts[i] = LIANG
    units = dict(UNITS)
    text = "".join(units[p] if isinstance(p, int) else p for p in parts)
    if fraction:
        text += POINT + read_digits(fraction)
    if text.startswith(POINT):
        text = DIGITS[0] + text
    if len(text) >= 2 and text[0] == DIGITS[1] and text[1] == "十":
        text = text[1:]  # 一十五 -> 十五
    return text


def _read_date(date: str) -> str:
    year, sep, rest = date.strip().partition("年")
    if not sep:
        year, rest = "", date
    out = read_digits(year) + "年" if sep else ""
    if rest:
        month, sep, day = rest.strip().partition("月")
        if sep:
            out += read_number(month) + "月"
        else:
            day = date
        if day:
            out += read_number(day[:-1]) + day[-1]
    return out


def _read_money(money: str) -> str:
    for number in [m.group(1) for m in re.finditer(_NUMBER, money)]:
        money = money.replace(number, read_number(number))
    return money


def _read_phone(phone: str, fixed_line: bool) -> str:
    parts = phone.split("-") if fixed_line else phone.strip("+").split()
    return "".join(read_digits(p) for p in parts)


def _read_fraction(fraction: str) -> str:
    numerator, denominator = fraction.split("/")
    return read_number(denominator) + "分之" + read_number(numerator)


# (pattern, how a match's first group is read): the rules in the anchor's order
_RULES = [
    (DATE, _read_date),
    (MONEY, _read_money),
    (MOBILE, lambda s: _read_phone(s, fixed_line=False)),
    (FIXED_LINE, lambda s: _read_phone(s, fixed_line=True)),
    (FRACTION, _read_fraction),
    (PERCENT, lambda s: "百分之" + read_number(s.strip().strip("%"))),
    (COUNTED, read_number),
    (DIGIT_RUN, read_digits),
    (CARDINAL, read_number),
    (LETTERS_TWO, None),  # handled below: needs the inner groups
]


def spell_out(text: str) -> str:
    """Step 1: numbers and other non-standard words spelled out in Chinese characters."""
    text = "^" + text + "$"  # the rules look for a non-digit before a match; these are stripped again
    for pattern, read in _RULES:
        matches = list(pattern.finditer(text))
        for m in matches:
            if read is None:
                new = m.group(2) + "2" + m.group(3)
            else:
                new = read(m.group(1))
            text = text.replace(m.group(1), new, 1)
        if pattern is FRACTION:
            # full-width percent signs count as percent signs from here on
            text = text.replace("％", "%")
    return text.lstrip("^").rstrip("$")


def normalize(text: str) -> str:
    """Qwen2-Audio's Chinese normalisation: spell out, then punctuation to spaces."""
    return spell_out(text).translate(_TO_SPACE)
