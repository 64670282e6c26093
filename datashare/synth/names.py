"""Chinese personal names for the synthetic county, drawn vectorised from character pools.

Names are a surname and one or two given-name characters. A small share of given names carries a
rare character (生僻字); three of them exist only in GB18030 (not in GBK or GB2312), which is why
the legacy encoding the pipeline accepts is GB18030.
"""

from __future__ import annotations

import numpy as np

# Surnames common in Baoji (宝鸡), with rough relative frequencies.
SURNAMES: tuple[str, ...] = tuple(
    "王李张刘杨赵陈高马田郭冯孙何杜董贾任席雷吕魏白宋周吴徐朱胡韩梁许曹秦袁党姚薛段侯景权寇柴尚屈芦强苏"
)
# Zipf-like: the first surnames are the most frequent.
_SURNAME_WEIGHTS = 1.0 / (np.arange(len(SURNAMES)) + 4.0)
_SURNAME_WEIGHTS /= _SURNAME_WEIGHTS.sum()

MALE_CHARS: tuple[str, ...] = tuple(
    "伟强军平刚勇明杰涛斌超鹏辉华建国文武林峰磊亮兵波浩宇博俊凯龙海东永宏志晨旭阳鑫飞成庆德忠宝福贵生荣祥义顺虎锋帅江卫春利"
)
FEMALE_CHARS: tuple[str, ...] = tuple(
    "丽娟敏静艳芳霞燕秀英玲红梅琴兰凤花萍婷雪莉娜洁慧佳悦欣怡琳颖瑶倩茹蓉翠菊莲彩巧月珍琼蕾晶晓露妮"
)
# Characters that GB18030 encodes but GBK does not (CJK Extension A and B).
GB18030_ONLY: tuple[str, ...] = ("䶮", "㛃", "𠇔")
# 生僻字 seen in names; the first three are GB18030-only, the rest are outside GB2312.
RARE_CHARS: tuple[str, ...] = (*GB18030_ONLY, "堃", "喆", "玥", "昇", "燚", "犇", "垚", "赟", "珺")
# Characters used to make a second spelling of a name (a homophone typed by another clerk).
_ALIAS_CHARS: tuple[str, ...] = tuple("玮炜薇蔚维卫伟为")


def draw_names(
    rng: np.random.Generator, male: np.ndarray, *, rare_share: float = 0.004
) -> np.ndarray:
    """Names for persons of the given genders (True = male), as an object array of str."""
    n = len(male)
    surname = np.asarray(SURNAMES)[rng.choice(len(SURNAMES), size=n, p=_SURNAME_WEIGHTS)]
    pools = (np.asarray(FEMALE_CHARS), np.asarray(MALE_CHARS))
    first = np.where(
        male,
        pools[1][rng.integers(0, len(MALE_CHARS), n)],
        pools[0][rng.integers(0, len(FEMALE_CHARS), n)],
    )
    second = np.where(
        male,
        pools[1][rng.integers(0, len(MALE_CHARS), n)],
        pools[0][rng.integers(0, len(FEMALE_CHARS), n)],
    )
    second = np.where(rng.random(n) < 0.75, second, "")
    rare = rng.random(n) < rare_share
    rare_char = np.asarray(RARE_CHARS)[rng.integers(0, len(RARE_CHARS), n)]
    first = np.where(rare & (second == ""), rare_char, first)
    second = np.where(rare & (second != ""), rare_char, second)
    names = np.char.add(np.char.add(surname, first), second)
    return names.astype(object)


def force_rare_names(names: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """A copy of `names` where the given positions carry each GB18030-only character in turn."""
    out = names.copy()
    for i, pos in enumerate(positions):
        name = str(out[pos])
        out[pos] = name[:1] + GB18030_ONLY[i % len(GB18030_ONLY)] + name[2:]
    return out


def alias_names(rng: np.random.Generator, names: np.ndarray) -> np.ndarray:
    """A second spelling of each name: the last character replaced by a similar-sounding one."""
    n = len(names)
    repl = np.asarray(_ALIAS_CHARS)[rng.integers(0, len(_ALIAS_CHARS), n)]
    base = np.array([str(s) for s in names], dtype=object)
    last = np.array([s[-1] for s in base], dtype=object)
    repl = np.where(repl == last, "炜", repl).astype(object)
    repl = np.where(repl == last, "薇", repl).astype(object)
    return np.array([s[:-1] for s in base], dtype=object) + repl
