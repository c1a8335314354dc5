"""Plausible Chinese names for generated streets, lakes, estates and districts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import count, product

import numpy as np

# Two-character words of the kind Optics Valley streets and estates are named with.
# fmt: off
WORDS = (
    "春和", "景明", "流芳", "长岭", "凤凰", "龙泉", "汤逊", "豹澥", "花山", "九龙",
    "神墩", "关南", "关山", "鲁巷", "茅店", "光霞", "金融", "软件", "创业", "智慧",
    "未来", "科技", "大学", "生物", "光电", "华师", "青年", "紫荆", "丁香", "桂花",
    "玉兰", "梧桐", "银杏", "樱花", "翠柳", "竹林", "明月", "清风", "朝阳", "望湖",
    "临湖", "湖畔", "湖景", "山水", "青山", "锦绣", "华光", "金桥", "长青", "康宁",
    "安居", "和平", "幸福", "民乐", "兴业", "振华", "创新", "汇智", "聚贤", "博学",
    "知音", "白沙", "黄龙", "左岭", "滨湖", "佛祖", "东篱", "南山", "凌云", "揽月",
    "书城", "嘉园", "彩虹", "光明", "锦程", "新竹", "荷塘", "映山",
)
# fmt: on
STREET_SUFFIXES = ("路", "街", "一路", "二路", "三路", "北路", "南路", "东路", "西路", "大街")
DIGITS = "零一二三四五六七八九"


def chinese_numeral(n: int) -> str:
    """1 -> 一, 12 -> 十二, 40 -> 四十; numbers from 100 stay in Arabic digits."""
    if not 0 < n < 100:
        return str(n)
    tens, ones = divmod(n, 10)
    if tens == 0:
        return DIGITS[ones]
    return ("" if tens == 1 else DIGITS[tens]) + "十" + (DIGITS[ones] if ones else "")


def _unique(candidates: Iterable[str], taken: set[str]) -> Iterator[str]:
    for name in candidates:
        if name not in taken:
            taken.add(name)
            yield name


def numbered(template: str, n: int, taken: set[str]) -> list[str]:
    """``template`` with 一, 二, ... filled in (光谷{}路 -> 光谷一路), skipping names in use."""
    names = _unique((template.format(chinese_numeral(k)) for k in count(1)), taken)
    return [next(names) for _ in range(n)]


def shuffled_words(rng: np.random.Generator, suffixes: tuple[str, ...]) -> Iterator[str]:
    """Word + suffix combinations in seeded order, then numbered ones, never ending."""
    pairs = [(w, s) for s, w in product(suffixes, WORDS) if not set(w) & set(s)]  # no 湖景湖
    yield from (pairs[i][0] + pairs[i][1] for i in rng.permutation(len(pairs)))
    for k in count(1):
        yield from (f"{w}{chinese_numeral(k)}{s}" for w, s in pairs)


def street_names(rng: np.random.Generator, n: int, taken: set[str]) -> list[str]:
    names = _unique(shuffled_words(rng, STREET_SUFFIXES), taken)
    return [next(names) for _ in range(n)]


def place_names(rng: np.random.Generator, n: int, suffix: str, taken: set[str]) -> list[str]:
    """Distinct names such as 凤凰湖 or 关山街道."""
    names = _unique(shuffled_words(rng, (suffix,)), taken)
    return [next(names) for _ in range(n)]


def words(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` words drawn with repetition, for names that need not be unique (estates)."""
    return np.asarray(WORDS)[rng.integers(0, len(WORDS), n)]
