"""A synthetic county (陇县, 610327) and the files its departments deliver night after night.

Over 600 lines on purpose: one short builder per dataset over one shared County; split by
dataset, each file would need the whole county's state and the dated changes that tie them.

    build_county(seed, households) ── County (ground truth: households, persons, and what each
         │                            department knows about them, with dated changes)
         ├── dataset_rows(county, dataset, D)   canonical rows a department delivers for date D
         └── write_night(county, landing, D)    files in landing/<DEPT>/<DATASET>_<YYYYMMDD>.<ext>
                                                plus a NightManifest of files and injected defects

Time. The county is built around `start` (the first exchange date, the *initial load*). Every
change is drawn once, at build time, as a date in [start - 365 days, start + 365 days] (deaths,
births, moves, dropouts, job changes, renovations, roster changes, project outcomes, big
hospital bills), so the state on any date D is a pure function of (county, D) and nights can be
generated in any order. Day-to-day events that are not tied to a case (ordinary settlements,
temporary relief, student payments) are drawn per day from a Generator seeded by (seed, dataset,
day). On the first night events datasets deliver their backlog (the last 365 days; 400 for
YB_JIESUAN so that bills just older than twelve months exist); after that, the events dated D.

Which datasets deliver on D (`datasets_due`): every dataset on the first night; XC_HU and
XC_REN every night (the roster system exports nightly); the other snapshots once a week on
their department's weekday (`SCHEDULE`); events datasets on nights they have events; XC_HECHA
only when asked.

Every alert rule of rules.md can fire and near-miss on the generated data. The probabilities
(module constants `P_*`) are modest; each condition also has a guaranteed minimum of one case so
that a county of a few hundred households shows every rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

import expectations
from datashare.synth.files import (
    ACCEPTED_ENCODINGS,
    EXTENSIONS,
    PreparedDelivery,
    _join,
    canonical_arrays,
    compact_dates,
    fresh_ids,
    ids_from_numbers,
    prepare_delivery,
    render_delivery,
    rng_for,
    source_row,
    zfill,
)
from datashare.synth.from_contract import contract_rows
from datashare.synth.names import (
    FEMALE_CHARS,
    MALE_CHARS,
    RARE_CHARS,
    SURNAMES,
    alias_names,
    draw_names,
    force_rare_names,
)
from domain.identity_codes import CC_ALPHABET, credit_code_check_char, id18_check_char
from expectations.contract import Common, Contract, load_common, load_contracts

DIVISIONS_CSV = Path(expectations.__file__).parent / "reference" / "divisions.csv"
COUNTY_NAME = "陇县"
COUNTY_CODE = "610327"
DEFAULT_START = date(2025, 3, 10)
WINDOW_DAYS = 365  # changes are drawn from start - WINDOW_DAYS ...
HORIZON_DAYS = 365  # ... to start + HORIZON_DAYS
# 防返贫监测收入标准, province 61 (demo values of the spec); used to place incomes around it.
THRESHOLDS: dict[int, float] = {
    2021: 6000.0,
    2022: 6300.0,
    2023: 6900.0,
    2024: 7200.0,
    2025: 7500.0,
    2026: 7800.0,
}

# Probabilities (per household or person, over the whole two-year window unless said).
P_OFF_ROSTER = 0.10  # households not in the XC roster (still in other departments' data)
P_TUOPIN = 0.35  # roster households that are 脱贫户
P_MONITORED = 0.06  # roster households that are monitored (some from a date after start)
P_LOW_INCOME = 0.025  # households with income below the threshold (INC-01)
P_AT_THRESHOLD = 0.003  # ... exactly at it (near miss)
P_DIBAO = {"脱贫户": 0.12, "monitored": 0.30, "一般农户": 0.03, "off_roster": 0.05}
P_BIG_BILL = 0.02  # households with hospital bills above 10000 yuan self-paid (YB-01)
P_ASSESSED = 0.35  # households with a ZJ_FANGWU assessment
P_UNSAFE_WATER = 0.03  # SL_YINSHUI water_safe 否 (SL-01); 40% are fixed after start
P_PROJECT = 0.25  # roster households with an NY_CHANYE project; 7% of them fail
P_MISSING_PUPIL = 0.005  # children 6-15 absent from JT_XUEJI (JT-01)
P_DROPOUT = 0.006  # children 6-15 who drop out (JT-01); half of them after start
P_ALIAS = 0.003  # persons whose name another department spells differently (DQ-01)
P_JOB_CHANGE = 0.05  # RS_JIUYE listed persons whose status changes in the window
P_UNEMPLOYED = 0.10  # RS_JIUYE listed persons who are 未就业
P_ROSTER_KEEPS_DEAD = 0.25  # deaths the roster never records (GA-02)
P_MZ_KEEPS_DEAD = 0.20  # dead dibao persons still 在保 (GA-01)
P_CL_KEEPS_DEAD = 0.30  # dead certificate holders still 有效 with subsidies (GA-01)
P_REVERSAL = 0.02  # ordinary settlements reversed (冲销) 0-3 days later
RATE_SETTLEMENT = 0.0015  # ordinary settlements per living person per day
RATE_RELIEF = 0.0002  # MZ_LINSHI cases per household per day
P_PAYDAY_SHARE = 0.05  # JT_ZIZHU: share of eligible students paid on a payday (10th, 25th)

# Delivery weekdays of snapshot datasets (0 = Monday); "daily" = every night.
SCHEDULE: dict[str, str | int] = {
    "XC_HU": "daily",
    "XC_REN": "daily",
    "YB_CANBAO": 0,
    "WJ_MANBING": 1,
    "MZ_DIBAO": 2,
    "RS_JIUYE": 2,
    "JT_XUEJI": 3,
    "CL_CANJI": 3,
    "ZJ_FANGWU": 4,
    "SL_YINSHUI": 4,
}
ON_REQUEST = frozenset({"XC_HECHA"})
BACKLOG_DAYS = {"YB_JIESUAN": 400}

_AREAS_ELSEWHERE = (
    "610302",
    "610303",
    "610304",
    "610322",
    "610323",
    "610324",
    "610326",
    "610328",
    "610329",
    "610330",
    "610331",
    "620802",
    "620821",
)
_RISKS = tuple(load_contracts()["XC_HU"].column("risk_types").values)
_RISK_WEIGHTS = (0.25, 0.08, 0.15, 0.05, 0.05, 0.05, 0.12, 0.12, 0.04, 0.03, 0.06)
_DISEASES_CHRONIC = (
    "高血压",
    "2型糖尿病",
    "冠心病",
    "慢性阻塞性肺疾病",
    "脑卒中后遗症",
    "类风湿关节炎",
)
_DISEASES_SERIOUS = ("儿童白血病", "胃癌", "食管癌", "肺癌", "终末期肾病", "结肠癌", "乳腺癌")
_DIAGNOSES = (
    "I10",
    "E11.9",
    "J18.9",
    "K29.7",
    "I63.9",
    "C16.9",
    "N18.5",
    "J44.1",
    "M06.9",
    "I25.1",
)
_HOSPITALS = (
    "陇县人民医院",
    "陇县中医医院",
    "宝鸡市中心医院",
    "宝鸡市人民医院",
    "陕西省人民医院",
    "西安交通大学第一附属医院",
)
_CL_CATEGORIES = ("视力", "听力", "言语", "肢体", "智力", "精神", "多重")
_CL_WEIGHTS = (0.12, 0.12, 0.04, 0.40, 0.12, 0.12, 0.08)
_LEVELS = ("一级", "二级", "三级", "四级")
_JOBS = ("省外务工", "省内县外务工", "县内务工", "公益岗位", "自主创业", "未就业")
_CLERKS = ("张**", "李**", "王**", "刘**", "赵**")

_NAT = np.datetime64("NaT", "D")
_NONE = np.array(None, dtype=object)  # np.where(..., _NONE): missing text


# --- small helpers ----------------------------------------------------------------------------


def _d(day: date) -> np.datetime64:
    return np.datetime64(day, "D")


def _dates_between(rng: np.random.Generator, lo: date, hi: date, n: int) -> np.ndarray:
    span = max(1, (hi - lo).days + 1)
    return _d(lo) + rng.integers(0, span, n).astype("timedelta64[D]")


def _pick(
    rng: np.random.Generator, eligible: np.ndarray, p: float, *, at_least: int = 1
) -> np.ndarray:
    """A boolean mask choosing each eligible item with probability p, at least `at_least`."""
    chosen = eligible & (rng.random(len(eligible)) < p)
    short = at_least - int(chosen.sum())
    pool = np.flatnonzero(eligible & ~chosen)
    if short > 0 and len(pool):
        chosen[rng.choice(pool, size=min(short, len(pool)), replace=False)] = True
    return chosen


def _age_on(births: np.ndarray, day: date) -> np.ndarray:
    """Whole years on `day` of datetime64[D] birth dates."""
    b = births.astype("datetime64[D]")
    years = b.astype("datetime64[Y]").astype(np.int64) + 1970
    month_day = (
        (b.astype("datetime64[M]").astype(np.int64) % 12 + 1) * 100
        + (b - b.astype("datetime64[M]")).astype(np.int64)
        + 1
    )
    age = day.year - years - (month_day > day.month * 100 + day.day)
    return np.where(np.isnat(b), -1, age)


def _on_or_before(dates: np.ndarray, day: date) -> np.ndarray:
    return ~np.isnat(dates) & (dates <= _d(day))


def _after(dates: np.ndarray, day: date) -> np.ndarray:
    """True where the date is missing (never) or after `day`."""
    return np.isnat(dates) | (dates > _d(day))


def _money(x: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(x, dtype=float), 2)


def _gb11714(code8: str) -> str:
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    total = sum(chars.index(c) * w for c, w in zip(code8, weights, strict=True))
    check = 11 - total % 11
    return code8 + ("X" if check == 10 else "0" if check == 11 else str(check))


def credit_code(prefix: str, area: str, code8: str) -> str:
    """A unified social credit code (GB 32100) with correct check characters."""
    body = prefix + area + _gb11714(code8)
    return body + credit_code_check_char([body])[0]


def load_divisions(path: Path = DIVISIONS_CSV) -> pd.DataFrame:
    """The county's administrative divisions: village_code, town, village."""
    return pd.read_csv(path, dtype=str, encoding="utf-8")


# --- the county -------------------------------------------------------------------------------


@dataclass(frozen=True)
class County:
    """Ground truth of a synthetic county; frames are never mutated after `build_county`."""

    seed: int
    start: date
    divisions: pd.DataFrame
    households: pd.DataFrame
    persons: pd.DataFrame
    employers: pd.DataFrame
    dibao: pd.DataFrame
    disability: pd.DataFrame
    jobs: pd.DataFrame
    houses: pd.DataFrame
    water: pd.DataFrame
    projects: pd.DataFrame
    students: pd.DataFrame
    chronic: pd.DataFrame
    bills: pd.DataFrame

    @property
    def window_start(self) -> date:
        return self.start - timedelta(days=WINDOW_DAYS)

    @property
    def horizon_end(self) -> date:
        return self.start + timedelta(days=HORIZON_DAYS)

    @property
    def threshold(self) -> float:
        return THRESHOLDS[self.start.year]

    @cached_property
    def person_dates(self) -> dict[str, np.ndarray]:
        """Persons' dated facts as datetime64[D] arrays ('gone' = death, else moving out)."""
        p = self.persons
        out = {
            c: p[c].to_numpy(dtype="datetime64[D]")
            for c in (
                "birth_date",
                "exists_from",
                "death_date",
                "migrate_out",
                "migrate_in",
                "army_date",
                "roster_from",
                "roster_until",
            )
        }
        out["gone"] = np.where(np.isnat(out["death_date"]), out["migrate_out"], out["death_date"])
        return out

    @cached_property
    def on_dibao(self) -> np.ndarray:
        """Per person: listed in MZ_DIBAO (whatever the status)."""
        mask = np.zeros(len(self.persons), dtype=bool)
        mask[self.dibao["person"].to_numpy()] = True
        return mask


def _dates(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype="datetime64[D]")


_SLOTS = (
    "head",
    "spouse",
    "father",
    "mother",
    "child1",
    "child2",
    "child3",
    "child4",
    "dil",
    "grand1",
    "grand2",
    "sibling",
    "other",
    "baby",
)


def _members(rng: np.random.Generator, n_households: int) -> pd.DataFrame:
    """Household members from a fixed slot layout (vectorised): household, relation, age, sex."""
    h = n_households
    s = len(_SLOTS)
    exist = np.zeros((h, s), dtype=bool)
    age = np.zeros((h, s), dtype=np.int64)
    male = np.zeros((h, s), dtype=bool)
    head_age = np.clip(rng.normal(54, 13, h), 24, 88).astype(np.int64)
    head_male = rng.random(h) < 0.88
    exist[:, 0], age[:, 0], male[:, 0] = True, head_age, head_male
    exist[:, 1] = rng.random(h) < np.where(head_age < 70, 0.85, 0.6)
    age[:, 1] = np.clip(head_age + rng.integers(-4, 3, h), 20, 95)
    male[:, 1] = ~head_male
    for j, is_male in ((2, True), (3, False)):
        age[:, j] = head_age + rng.integers(22, 33, h)
        exist[:, j] = (head_age < 58) & (rng.random(h) < 0.25) & (age[:, j] <= 92)
        male[:, j] = is_male
    n_children = rng.choice(5, size=h, p=[0.12, 0.33, 0.38, 0.13, 0.04])
    for i in range(4):
        j = 4 + i
        age[:, j] = head_age - rng.integers(22, 32, h) - 3 * i - rng.integers(0, 3, h)
        stays = (head_age <= 58) | (age[:, j] < 25) | (rng.random(h) < 0.45)
        exist[:, j] = (i < n_children) & (age[:, j] >= 0) & stays
        male[:, j] = rng.random(h) < 0.52
    sons = exist[:, 4:8] & male[:, 4:8] & (age[:, 4:8] >= 23)
    son_age = np.where(sons, age[:, 4:8], -1).max(axis=1)
    exist[:, 8] = (son_age >= 23) & (rng.random(h) < 0.6)
    age[:, 8] = np.maximum(son_age + rng.integers(-3, 2, h), 20)
    for g, p in ((9, 0.6), (10, 0.35)):
        age[:, g] = son_age - rng.integers(22, 30, h) - 2 * (g - 9)
        exist[:, g] = exist[:, 8] & (age[:, g] >= 0) & (rng.random(h) < p)
        male[:, g] = rng.random(h) < 0.52
    exist[:, 11] = rng.random(h) < 0.02
    age[:, 11] = np.clip(head_age + rng.integers(-6, 6, h), 18, 90)
    male[:, 11] = rng.random(h) < 0.5
    exist[:, 12] = rng.random(h) < 0.01
    age[:, 12] = rng.integers(18, 80, h)
    male[:, 12] = rng.random(h) < 0.5
    exist[:, 13] = (head_age >= 22) & (head_age <= 40) & exist[:, 1] & (rng.random(h) < 0.03)
    age[:, 13] = -1  # born after start
    male[:, 13] = rng.random(h) < 0.52
    hh, slot = np.nonzero(exist)
    relation = np.array(
        [
            "户主",
            "配偶",
            "之父",
            "之母",
            "之子",
            "之子",
            "之子",
            "之子",
            "之儿媳",
            "之孙子",
            "之孙子",
            "兄弟姐妹",
            "其他",
            "之子",
        ],
        dtype=object,
    )[slot]
    person_male = male[hh, slot]
    female_rel = {"之子": "之女", "之孙子": "之孙女"}
    for m_rel, f_rel in female_rel.items():
        relation = np.where((relation == m_rel) & ~person_male, f_rel, relation)
    return pd.DataFrame(
        {
            "hh": hh,
            "slot": slot,
            "relation": relation.astype(object),
            "age": age[hh, slot],
            "male": person_male,
        }
    )


def _make_ids(
    rng: np.random.Generator, area: np.ndarray, births: np.ndarray, male: np.ndarray
) -> np.ndarray:
    """Unique valid 18-digit ids: area + birth date + sequence (odd for men) + MOD 11-2 check."""
    n = len(area)
    compact = compact_dates(births)
    frame = pd.DataFrame({"a": area, "b": compact, "m": male})
    perm = rng.permutation(n)
    rank = np.empty(n, dtype=np.int64)
    rank[perm] = frame.iloc[perm].groupby(["a", "b", "m"], sort=False).cumcount().to_numpy()
    group = frame.groupby(["a", "b", "m"], sort=False).ngroup().to_numpy()
    if rank.max(initial=0) >= 450:
        raise ValueError("too many persons share an area, birth date and sex")
    offset = rng.integers(0, 450, group.max(initial=0) + 1)[group]
    seq = (rank + offset) % 450 * 2 + male.astype(np.int64)
    first17 = pd.Series(_join(area, compact, zfill(seq, 3)), dtype=object)
    return (first17 + id18_check_char(first17).astype(object)).to_numpy(dtype=object)


def build_county(seed: int, households: int, *, start: date = DEFAULT_START) -> County:
    """Build a deterministic synthetic county of `households` households around `start`."""
    if households < 1:
        raise ValueError("a county needs at least one household")
    if start.year not in THRESHOLDS:
        raise ValueError(f"no monitoring threshold for {start.year}")
    rng = rng_for(seed, "county")
    divisions = load_divisions()
    window_start = start - timedelta(days=WINDOW_DAYS)
    horizon_end = start + timedelta(days=HORIZON_DAYS)
    threshold = THRESHOLDS[start.year]
    h = households

    # Households and their villages.
    weights = rng.gamma(2.0, 1.0, len(divisions))
    village = rng.choice(len(divisions), size=h, p=weights / weights.sum())
    div = divisions.iloc[village].reset_index(drop=True)
    order = rng.permutation(h)
    seq = np.empty(h, dtype=np.int64)
    seq[order] = pd.Series(village[order]).groupby(village[order]).cumcount().to_numpy() + 1
    household_id = _join(div["village_code"].to_numpy(dtype=str), zfill(seq, 4))
    on_roster = rng.random(h) >= P_OFF_ROSTER
    tuopin = on_roster & (rng.random(h) < P_TUOPIN)

    # Persons.
    members = _members(rng, h)
    p = len(members)
    hh = members["hh"].to_numpy()
    male = members["male"].to_numpy()
    relation = members["relation"].to_numpy(dtype=object)
    ages = members["age"].to_numpy()
    baby = members["slot"].to_numpy() == _SLOTS.index("baby")
    births = np.where(
        baby,
        _d(start) + rng.integers(1, 300, p).astype("timedelta64[D]"),
        _d(start) - (ages * 365.25 + rng.integers(0, 365, p)).astype("timedelta64[D]"),
    )
    births = births.astype("datetime64[D]")
    from_elsewhere = rng.random(p) < np.where(relation == "配偶", 0.2, 0.05)
    area = np.where(
        from_elsewhere,
        np.asarray(_AREAS_ELSEWHERE)[rng.integers(0, len(_AREAS_ELSEWHERE), p)],
        COUNTY_CODE,
    )
    ids = _make_ids(rng, area, births, male)
    names = draw_names(rng, male)
    head_pos = np.flatnonzero(relation == "户主")  # one per household, in household order
    head_of = head_pos[np.argsort(hh[head_pos])]
    head_surname = np.array([n[0] for n in names[head_of]], dtype=object)
    blood = np.isin(relation, ["之子", "之女", "之孙子", "之孙女", "之父", "兄弟姐妹"])
    inherit = blood & male[head_of][hh]
    names = np.where(
        inherit, head_surname[hh] + np.array([n[1:] for n in names], dtype=object), names
    )
    names = force_rare_names(names, rng.choice(p, size=min(p, 3), replace=False))
    age_start = _age_on(births, start)

    health = rng.choice(
        ["健康", "长期慢性病", "患大病", "残疾"], size=p, p=[0.86, 0.08, 0.02, 0.04]
    ).astype(object)
    old = age_start >= 60
    health[old] = rng.choice(
        ["健康", "长期慢性病", "患大病", "残疾"], size=int(old.sum()), p=[0.68, 0.20, 0.04, 0.08]
    )
    health[age_start < 1] = "健康"
    skill = np.full(p, "无劳动力", dtype=object)
    working = (age_start >= 16) & (age_start <= 60)
    skill[working] = rng.choice(
        ["技能劳动力", "普通劳动力", "弱劳动力或半劳动力", "丧失劳动力"],
        size=int(working.sum()),
        p=[0.2, 0.6, 0.12, 0.08],
    )
    senior = (age_start > 60) & (age_start <= 70)
    skill[senior] = rng.choice(
        ["普通劳动力", "弱劳动力或半劳动力", "丧失劳动力"],
        size=int(senior.sum()),
        p=[0.3, 0.6, 0.1],
    )
    sick = working & np.isin(health, ["患大病", "残疾"])
    skill[sick] = np.where(rng.random(int(sick.sum())) < 0.5, "弱劳动力或半劳动力", "丧失劳动力")

    # Life events: deaths (never the head), moves, births, military service.
    not_head = relation != "户主"
    hazard = np.where(age_start >= 75, 0.06, np.where(age_start >= 60, 0.015, 0.002))
    dies = not_head & ~baby & (rng.random(p) < 1 - (1 - hazard) ** 2)
    death = np.where(dies, _dates_between(rng, window_start, horizon_end, p), _NAT)
    migrate_out = np.where(
        not_head & (age_start >= 18) & (age_start <= 45) & ~dies & (rng.random(p) < 0.004),
        _dates_between(rng, window_start, horizon_end, p),
        _NAT,
    )
    migrate_in = np.where(
        (relation == "配偶") & from_elsewhere & ~dies & (rng.random(p) < 0.03),
        _dates_between(rng, window_start, horizon_end, p),
        _NAT,
    )
    army = np.where(
        male & (age_start >= 18) & (age_start <= 22) & not_head & (rng.random(p) < 0.002),
        _dates_between(rng, window_start, horizon_end, p),
        _NAT,
    )
    exists_from = np.where(np.isnat(migrate_in), births, migrate_in).astype("datetime64[D]")
    roster_from = np.where(
        exists_from >= _d(window_start),
        exists_from + rng.integers(7, 60, p).astype("timedelta64[D]"),
        _NAT,
    )
    keeps_dead = rng.random(p) < P_ROSTER_KEEPS_DEAD
    gone = np.where(np.isnat(death), migrate_out, death)
    roster_until = np.where(
        ~np.isnat(gone) & ~(keeps_dead & ~np.isnat(death)),
        gone + rng.integers(5, 60, p).astype("timedelta64[D]"),
        _NAT,
    )
    # GA-02 needs at least one death before start that the roster never records.
    on_roster_p = on_roster[hh]
    if not (on_roster_p & ~np.isnat(death) & (death <= _d(start)) & np.isnat(roster_until)).any():
        pool = np.flatnonzero(on_roster_p & not_head & ~baby & np.isnat(migrate_out))
        if len(pool):
            k = rng.choice(pool)
            death[k] = _d(start) - np.timedelta64(int(rng.integers(10, 90)), "D")
            roster_until[k] = _NAT

    persons = pd.DataFrame(
        {
            "person": np.arange(p),
            "hh": hh,
            "household_id": household_id[hh],
            "relation": relation,
            "name": names,
            "id_number": ids,
            "gender": np.where(male, "男", "女").astype(object),
            "male": male,
            "birth_date": births,
            "ethnicity": rng.choice(
                ["汉族", "回族", "满族"], size=p, p=[0.985, 0.01, 0.005]
            ).astype(object),
            "health": health,
            "labour_skill": skill,
            "medical_insured": rng.random(p) < 0.985,
            "age_at_start": age_start,
            "exists_from": exists_from,
            "death_date": death,
            "migrate_out": migrate_out,
            "migrate_in": migrate_in,
            "army_date": army,
            "roster_from": roster_from,
            "roster_until": roster_until,
            "on_roster": on_roster_p,
        }
    )

    # Households: roster facts, monitoring, income.
    size0 = np.bincount(hh, weights=(~baby).astype(float), minlength=h).astype(np.int64)
    employers = _employers(rng, divisions)
    dibao, designated = _dibao(rng, persons, on_roster, tuopin, start, size0)
    if designated is not None:  # GA-01: a person 在保 who died before start
        who, when = designated
        death[who] = when
        roster_until[who] = when + np.timedelta64(20, "D")
        persons = persons.assign(death_date=death, roster_until=roster_until)
    disability = _disability(rng, persons, dibao, start)
    students = _students(rng, persons, div, start)
    jobs = _jobs(rng, persons, employers, div, start, horizon_end)
    houses = _houses(rng, persons, head_of, div, h, start, horizon_end)
    water = _water(rng, head_of, on_roster, h, start)
    projects = _projects(rng, head_of, on_roster, h, start, horizon_end)
    chronic = _chronic(rng, persons, start)
    bills = _bills(rng, persons, h, head_of, start, dibao)

    monitored = _monitoring(
        rng,
        h,
        on_roster,
        tuopin,
        start,
        horizon_end,
        {
            "因病": np.isin(np.arange(h), hh[bills["person"].to_numpy()]),
            "因安全住房": np.isin(np.arange(h), houses.loc[houses["grade"].isin(["C", "D"]), "hh"]),
            "因安全饮水": np.isin(np.arange(h), water.loc[~water["water_safe"], "hh"]),
            "因残": np.isin(
                np.arange(h),
                hh[disability.loc[disability["level"].isin(["一级", "二级"]), "person"].to_numpy()],
            ),
            "因产业项目失败": np.isin(
                np.arange(h), projects.loc[projects["final_status"] == "失败", "hh"]
            ),
            "因学": np.isin(
                np.arange(h),
                hh[students.loc[students["dropout_date"].notna() | students["missing"], "person"]],
            ),
        },
    )
    income = np.clip(rng.lognormal(np.log(13000), 0.45, h), 3000, 80000)
    is_mon = monitored["monitoring_category"].notna().to_numpy()
    income = np.where(is_mon, income * 0.7, income)
    low = _pick(rng, on_roster & ~is_mon, P_LOW_INCOME)
    income = np.where(low, rng.uniform(4000, threshold - 1, h), income)
    at = _pick(rng, on_roster & ~is_mon & ~low, P_AT_THRESHOLD)
    income = np.where(at, threshold, _money(income))
    total = income * size0
    compliant = _money(np.where(rng.random(h) < 0.2, rng.uniform(200, 3000, h), 0.0))
    wage = _money(total * rng.uniform(0.4, 0.7, h))
    prop = _money(total * rng.uniform(0.0, 0.05, h))
    transfer = _money(total * rng.uniform(0.05, 0.25, h))
    business = _money(total + compliant - wage - prop - transfer)
    phone = _join(
        "1", np.asarray(list("35789"))[rng.integers(0, 5, h)], zfill(rng.integers(0, 10**9, h), 9)
    )
    households_frame = pd.DataFrame(
        {
            "hh": np.arange(h),
            "household_id": household_id,
            "village_code": div["village_code"],
            "town": div["town"],
            "village": div["village"],
            "on_roster": on_roster,
            "household_type": np.where(tuopin, "脱贫户", "一般农户").astype(object),
            "head": head_of,
            "size_at_build": size0,
            "income_per_capita": income,
            "wage_income": wage,
            "business_income": business,
            "property_income": prop,
            "transfer_income": transfer,
            "compliant_self_pay": compliant,
            "phone": phone,
            "low_income": low,
            "at_threshold": at,
        }
    ).join(monitored)

    alias = _pick(rng, ~baby & np.isnat(death), P_ALIAS)
    alias_name = np.full(p, None, dtype=object)
    alias_name[alias] = alias_names(rng, names[alias])
    persons = persons.assign(alias_name=alias_name)

    return County(
        seed=seed,
        start=start,
        divisions=divisions,
        households=households_frame,
        persons=persons,
        employers=employers,
        dibao=dibao,
        disability=disability,
        jobs=jobs,
        houses=houses,
        water=water,
        projects=projects,
        students=students,
        chronic=chronic,
        bills=bills,
    )


def _monitoring(
    rng: np.random.Generator,
    h: int,
    on_roster: np.ndarray,
    tuopin: np.ndarray,
    start: date,
    horizon_end: date,
    conditions: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Monitored households: category, risks, since when, and whether/when risk was removed.

    A quarter of the households with a risk condition are monitored for that very risk, so the
    alert rules meet both households they must flag and ones already known (near misses).
    """
    chosen = _pick(rng, on_roster, P_MONITORED, at_least=2)
    risks: list[list[str]] = [[] for _ in range(h)]
    for risk, cond in conditions.items():
        known = _pick(
            rng, on_roster & cond, 0.25, at_least=1 if (on_roster & cond).sum() > 1 else 0
        )
        chosen |= known
        for i in np.flatnonzero(known):
            risks[i].append(risk)
    weights = np.asarray(_RISK_WEIGHTS) / sum(_RISK_WEIGHTS)
    extra = rng.choice(len(_RISKS), size=(h, 2), p=weights)
    two = rng.random(h) < 0.35
    for i in np.flatnonzero(chosen):
        if not risks[i]:
            risks[i] = [_RISKS[extra[i, 0]]] + ([_RISKS[extra[i, 1]]] if two[i] else [])
    order = {r: k for k, r in enumerate(_RISKS)}
    risk_text = np.array(
        ["、".join(sorted(set(r), key=order.__getitem__)) if r else None for r in risks],
        dtype=object,
    )
    sudden = rng.random(h) >= 0.7
    category = np.where(
        sudden, "突发严重困难户", np.where(tuopin, "脱贫不稳定户", "边缘易致贫户")
    ).astype(object)
    category[~chosen] = None
    late = chosen & (rng.random(h) < 0.15)
    since = np.where(
        late,
        _dates_between(rng, start + timedelta(days=1), start + timedelta(days=200), h),
        _dates_between(rng, date(2021, 6, 1), start - timedelta(days=30), h),
    )
    since = np.where(chosen, since, _NAT)
    eliminated = np.where(
        chosen & ~late & (rng.random(h) < 0.3),
        np.minimum(
            since + rng.integers(180, 720, h).astype("timedelta64[D]"),
            _d(start) - np.timedelta64(1, "D"),
        ),
        _NAT,
    )
    # Elimination must fall in a later month than identification.
    eliminated = np.where(
        eliminated.astype("datetime64[M]") <= since.astype("datetime64[M]"), _NAT, eliminated
    )
    during = chosen & ~late & np.isnat(eliminated) & (rng.random(h) < 0.05)
    eliminated = np.where(
        during, _dates_between(rng, start + timedelta(days=1), horizon_end, h), eliminated
    )
    method = np.where(rng.random(h) < 0.8, "帮扶消除", "自然消除").astype(object)
    method[np.isnat(eliminated)] = None
    return pd.DataFrame(
        {
            "monitoring_category": category,
            "risk_types": risk_text,
            "monitored_from": since,
            "eliminated_on": eliminated,
            "elimination_method": method,
        }
    )


def _employers(rng: np.random.Generator, divisions: pd.DataFrame) -> pd.DataFrame:
    """Employers with valid unified social credit codes (GB 32100)."""
    places = ("陇县", "宝鸡市", "西安市", "咸阳市", "苏州市", "深圳市", "东莞市", "宁波市")
    trades = (
        "建筑工程",
        "劳务",
        "电子科技",
        "食品",
        "物流",
        "服装",
        "机械制造",
        "家政服务",
        "农业开发",
    )
    chars = CC_ALPHABET
    rows = []
    for i in range(60):
        place = places[i % len(places)]
        code8 = "".join(chars[int(k)] for k in rng.integers(0, 31, 8))
        area = (
            COUNTY_CODE
            if place == "陇县"
            else str(
                rng.choice(["610300", "610100", "610400", "320500", "440300", "441900", "330200"])
            )
        )
        name = f"{place}{'宏兴恒达顺安金盛'[i % 8]}{trades[i % len(trades)]}有限公司"
        rows.append(
            {
                "employer": name,
                "credit_code": credit_code("91", area, code8),
                "in_county": place == "陇县",
                "public": False,
            }
        )
    for town in divisions["town"].drop_duplicates():
        code8 = "".join(chars[int(k)] for k in rng.integers(0, 10, 8))
        rows.append(
            {
                "employer": f"{COUNTY_NAME}{town}人民政府",
                "credit_code": credit_code("11", COUNTY_CODE, code8),
                "in_county": True,
                "public": True,
            }
        )
    return pd.DataFrame(rows)


def _dibao(
    rng: np.random.Generator,
    persons: pd.DataFrame,
    on_roster: np.ndarray,
    tuopin: np.ndarray,
    start: date,
    size0: np.ndarray,
) -> tuple[pd.DataFrame, tuple[int, np.datetime64] | None]:
    """MZ_DIBAO truth: whole households on 低保, single elderly on 特困, and when MZ stops.

    Also returns the person chosen to die before start while MZ keeps paying (GA-01), with the
    date of death, for the caller to record.
    """
    h = len(on_roster)
    p_household = np.where(
        ~on_roster, P_DIBAO["off_roster"], np.where(tuopin, P_DIBAO["脱贫户"], P_DIBAO["一般农户"])
    )
    chosen = rng.random(h) < p_household
    if (~on_roster).any() and not (chosen & ~on_roster).any():
        chosen[rng.choice(np.flatnonzero(~on_roster))] = True
    if (on_roster & ~tuopin).any() and not (chosen & on_roster & ~tuopin).any():
        chosen[rng.choice(np.flatnonzero(on_roster & ~tuopin))] = True
    hh = persons["hh"].to_numpy()
    exists = persons["exists_from"].to_numpy(dtype="datetime64[D]") <= _d(start)
    members = np.flatnonzero(chosen[hh] & exists)
    n = len(members)
    single_old = (size0[hh[members]] == 1) & (persons["age_at_start"].to_numpy()[members] >= 60)
    tekun = single_old & (rng.random(n) < 0.6)
    kind = np.where(tekun, "农村特困", np.where(rng.random(n) < 0.03, "城市低保", "农村低保"))
    support = np.where(tekun, np.where(rng.random(n) < 0.85, "分散供养", "集中供养"), _NONE)
    amount = np.where(tekun, rng.integers(78, 111, n) * 10.0, rng.integers(28, 63, n) * 10.0)
    started = _dates_between(rng, date(2016, 1, 1), start - timedelta(days=30), n)
    status = rng.choice(["在保", "停保", "退出"], size=n, p=[0.9, 0.04, 0.06]).astype(object)
    ended = np.where(
        status != "在保",
        np.minimum(
            started + rng.integers(200, 2000, n).astype("timedelta64[D]"),
            _d(start) - np.timedelta64(1, "D"),
        ),
        _NAT,
    )
    # GA-01: at least one person 在保 who died before start, and MZ never stopped paying.
    death = persons["death_date"].to_numpy(dtype="datetime64[D]").copy()
    keeps = rng.random(n) < P_MZ_KEEPS_DEAD
    pool = np.flatnonzero(
        (status == "在保")
        & (persons["relation"].to_numpy()[members] != "户主")
        & np.isnat(death[members])
    )
    designated = None
    if len(pool):
        k = int(rng.choice(pool))
        keeps[k] = True
        death_k = _d(start) - np.timedelta64(int(rng.integers(10, 60)), "D")
        death[members[k]] = death_k
        designated = (int(members[k]), death_k)
    stop = np.where(
        ~np.isnat(death[members]) & ~keeps,
        death[members] + rng.integers(10, 45, n).astype("timedelta64[D]"),
        _NAT,
    )
    bank = _join("6217", zfill(rng.integers(0, 10**15, n), 15))
    frame = pd.DataFrame(
        {
            "person": members,
            "assistance_type": kind.astype(object),
            "support_mode": support.astype(object),
            "monthly_amount": amount,
            "start_date": started,
            "status": status,
            "end_date": ended,
            "stop_on": stop,
            "bank_account": bank,
        }
    )
    return frame, designated


def _disability(
    rng: np.random.Generator, persons: pd.DataFrame, dibao: pd.DataFrame, start: date
) -> pd.DataFrame:
    """CL_CANJI truth: certificates of disabled persons, subsidies, when CL cancels them."""
    disabled = np.flatnonzero(persons["health"].to_numpy() == "残疾")
    n = len(disabled)
    category = rng.choice(len(_CL_CATEGORIES), size=n, p=np.asarray(_CL_WEIGHTS))
    level = rng.choice(4, size=n, p=[0.12, 0.2, 0.33, 0.35])
    ids = persons["id_number"].to_numpy()[disabled]
    cert = _join(ids.astype(str), (category + 1).astype(str), (level + 1).astype(str))
    poor = np.isin(disabled, dibao["person"].to_numpy())
    living = np.where(poor | (rng.random(n) < 0.1), 90.0, np.nan)
    care = np.where(level == 0, 100.0, np.where(level == 1, 80.0, np.nan))
    death = persons["death_date"].to_numpy(dtype="datetime64[D]")[disabled]
    keeps = rng.random(n) < P_CL_KEEPS_DEAD
    cancel = np.where(
        ~np.isnat(death) & ~keeps, death + rng.integers(15, 60, n).astype("timedelta64[D]"), _NAT
    )
    status = np.where(rng.random(n) < 0.03, "迁出", "有效").astype(object)
    return pd.DataFrame(
        {
            "person": disabled,
            "cert_no": cert,
            "category": np.asarray(_CL_CATEGORIES)[category],
            "level": np.asarray(_LEVELS)[level],
            "issue_date": _dates_between(rng, date(2010, 1, 1), start - timedelta(days=30), n),
            "base_status": status,
            "cancel_on": cancel,
            "living_subsidy": living,
            "care_subsidy": care,
        }
    )


# Canonical text is in the form the engine stores (NFKC: ASCII parentheses); a clerk's
# full-width spelling is one of the messy forms `delivered_values` produces.
_STAGE_TEXT = {
    "学前": "学前教育",
    "小学": "小学",
    "初中": "初中",
    "普通高中": "普通高中",
    "中职": "中职(中专)",
    "高职": "高职(专科)",
    "本科": "本科",
}
_GRADES = (
    "一年级",
    "二年级",
    "三年级",
    "四年级",
    "五年级",
    "六年级",
    "七年级",
    "八年级",
    "九年级",
    "高一",
    "高二",
    "高三",
)


def _students(
    rng: np.random.Generator, persons: pd.DataFrame, div: pd.DataFrame, start: date
) -> pd.DataFrame:
    """JT_XUEJI truth: who studies where, who is missing, who drops out and when."""
    age = persons["age_at_start"].to_numpy()
    p = len(age)
    stage = np.full(p, None, dtype=object)
    stage[(age >= 3) & (age <= 5) & ((age == 5) | (rng.random(p) < 0.8))] = "学前"
    stage[(age >= 6) & (age <= 11)] = "小学"
    stage[(age >= 12) & (age <= 14)] = "初中"
    upper = (age >= 15) & (age <= 17)
    pick = rng.random(p)
    stage[upper & (pick < 0.65)] = "普通高中"
    stage[upper & (pick >= 0.65) & (pick < 0.9)] = "中职"
    college = (age >= 18) & (age <= 21)
    stage[college & (pick < 0.15)] = "高职"
    stage[college & (pick >= 0.15) & (pick < 0.35)] = "本科"
    compulsory = (age >= 6) & (age <= 15)
    missing = _pick(rng, compulsory, P_MISSING_PUPIL)
    enrolled = np.flatnonzero(pd.notna(stage))
    n = len(enrolled)
    a = age[enrolled]
    town = div["town"].to_numpy()[persons["hh"].to_numpy()[enrolled]]
    st = stage[enrolled]
    school = np.select(
        [st == "学前", st == "小学", st == "初中", st == "普通高中", st == "中职", st == "高职"],
        [
            town + "中心幼儿园",
            town + "中心小学",
            town + "初级中学",
            np.full(n, "陇县中学", dtype=object),
            np.full(n, "陇县职业教育中心", dtype=object),
            np.full(n, "宝鸡职业技术学院", dtype=object),
        ],
        default="陕西师范大学",
    )
    school = np.where(np.isin(st, ["学前", "小学", "初中"]), COUNTY_NAME + school, school)
    grade_index = np.clip(a - 6, 0, 11)
    grade = np.where(
        np.isin(st, ["小学", "初中", "普通高中", "中职"]),
        np.asarray(_GRADES)[grade_index],
        "一年级",
    ).astype(object)
    grade[st == "学前"] = "大班"
    ages_c = (a >= 6) & (a <= 15)
    drop = _pick(rng, ages_c & ~missing[enrolled], P_DROPOUT)
    near = _pick(rng, (a >= 16) & (a <= 17), 0.02)
    drop_date = np.where(
        drop | near,
        _dates_between(rng, start - timedelta(days=200), start + timedelta(days=200), n),
        _NAT,
    )
    other = rng.random(n)
    status = np.where(other < 0.003, "休学", np.where(other < 0.006, "转出", "在读")).astype(object)
    status[drop | near] = "在读"
    enrol_year = (
        start.year
        - np.clip(
            a
            - np.select(
                [st == "学前", st == "小学", st == "初中", np.isin(st, ["普通高中", "中职"])],
                [3, 6, 12, 15],
                18,
            ),
            0,
            10,
        )
        - (start.month < 9)
    )
    enrol_date = (
        (enrol_year - 1970).astype("datetime64[Y]").astype("datetime64[M]") + np.timedelta64(8, "M")
    ).astype("datetime64[D]")
    return pd.DataFrame(
        {
            "person": enrolled,
            "stage": st,
            "school": school,
            "grade": grade,
            "base_status": status,
            "enrol_date": enrol_date,
            "dropout_date": drop_date,
            "missing": missing[enrolled],
        }
    )


def _jobs(
    rng: np.random.Generator,
    persons: pd.DataFrame,
    employers: pd.DataFrame,
    div: pd.DataFrame,
    start: date,
    horizon_end: date,
) -> pd.DataFrame:
    """RS_JIUYE truth: labour members' employment, and a dated change for a few of them."""
    age = persons["age_at_start"].to_numpy()
    skill = persons["labour_skill"].to_numpy()
    p = len(age)
    able = (age >= 16) & (age <= 60) & np.isin(skill, ["技能劳动力", "普通劳动力"])
    weak = (age >= 16) & (age <= 60) & (skill == "弱劳动力或半劳动力")
    listed = np.flatnonzero((able & (rng.random(p) < 0.9)) | (weak & (rng.random(p) < 0.4)))
    n = len(listed)
    probs = np.array([0.30, 0.20, 0.20, 0.06, 0.06 + 0.08 - P_UNEMPLOYED, P_UNEMPLOYED])
    status = np.asarray(_JOBS, dtype=object)[rng.choice(6, size=n, p=probs / probs.sum())]
    changes = rng.random(n) < P_JOB_CHANGE
    change_on = np.where(
        changes, _dates_between(rng, start - timedelta(days=60), horizon_end, n), _NAT
    )
    new_status = np.where(status == "未就业", "县内务工", "未就业").astype(object)
    private = employers.loc[~employers["public"]].reset_index(drop=True)
    public = employers.loc[employers["public"]].reset_index(drop=True)
    town = div["town"].to_numpy()[persons["hh"].to_numpy()[listed]]
    pub_idx = pd.Index(public["employer"]).get_indexer(COUNTY_NAME + town + "人民政府")
    pub_idx = np.where(pub_idx < 0, 0, pub_idx)
    in_county = np.flatnonzero(private["in_county"].to_numpy())
    outside = np.flatnonzero(~private["in_county"].to_numpy())
    emp = np.where(
        np.isin(status, ["县内务工"]) | np.isin(new_status, ["县内务工"]),
        in_county[rng.integers(0, len(in_county), n)],
        outside[rng.integers(0, len(outside), n)],
    )
    return pd.DataFrame(
        {
            "person": listed,
            "status": status,
            "change_on": change_on,
            "new_status": new_status,
            "employer": np.where(
                np.asarray(status) == "公益岗位",
                public["employer"].to_numpy()[pub_idx],
                private["employer"].to_numpy()[emp],
            ),
            "credit_code": np.where(
                np.asarray(status) == "公益岗位",
                public["credit_code"].to_numpy()[pub_idx],
                private["credit_code"].to_numpy()[emp],
            ),
            "start_date": _dates_between(rng, date(2018, 1, 1), start - timedelta(days=30), n),
            "income": rng.integers(20, 80, n) * 100.0,
        }
    )


def _houses(
    rng: np.random.Generator,
    persons: pd.DataFrame,
    head_of: np.ndarray,
    div: pd.DataFrame,
    h: int,
    start: date,
    horizon_end: date,
) -> pd.DataFrame:
    """ZJ_FANGWU truth: assessments, renovations (done, under way, not started), re-assessments."""
    assessed = _pick(rng, np.ones(h, dtype=bool), P_ASSESSED, at_least=3)
    idx = np.flatnonzero(assessed)
    n = len(idx)
    grade = rng.choice(["A", "B", "C", "D"], size=n, p=[0.45, 0.35, 0.14, 0.06]).astype(object)
    # Guarantee an unrenovated C/D (ZJ-01) and a renovated C (near miss).
    if n >= 3 and not (grade[:2] == "C").all():
        grade[0], grade[1] = "C", "D"
    when = _dates_between(rng, date(2019, 1, 1), start - timedelta(days=90), n)
    plan = rng.choice(["done", "during", "none"], size=n, p=[0.55, 0.25, 0.2]).astype(object)
    if n >= 3:
        plan[0], plan[1] = "done", "none"
    bad = np.isin(grade, ["C", "D"])
    built_from = when + rng.integers(30, 120, n).astype("timedelta64[D]")
    done_on = np.where(
        plan == "done",
        np.minimum(
            built_from + rng.integers(60, 300, n).astype("timedelta64[D]"),
            _d(start) - np.timedelta64(1, "D"),
        ),
        np.where(
            plan == "during", _dates_between(rng, start + timedelta(days=1), horizon_end, n), _NAT
        ),
    )
    built_from = np.where(plan == "none", _NAT, np.minimum(built_from, done_on))
    built_from = np.where(bad, built_from, _NAT)
    done_on = np.where(bad, done_on, _NAT)
    accepted = bad & (plan == "done") & (rng.random(n) < 0.5)
    subsidy = np.where(
        bad & (plan != "none"),
        np.where(grade == "D", rng.integers(30, 46, n), rng.integers(15, 30, n)) * 1000.0,
        np.nan,
    )
    structure = rng.choice(
        ["砖混", "砖木", "土木", "石木", "木", "窑洞", "其他"],
        size=n,
        p=[0.35, 0.25, 0.2, 0.05, 0.05, 0.08, 0.02],
    ).astype(object)
    structure[bad] = rng.choice(["土木", "窑洞", "砖木"], size=int(bad.sum()))
    address = _join(
        div["town"].to_numpy()[idx].astype(str),
        div["village"].to_numpy()[idx].astype(str),
        rng.integers(1, 9, n),
        "组",
        rng.integers(1, 60, n),
        "号",
    )
    first = pd.DataFrame(
        {
            "hh": idx,
            "head": head_of[idx],
            "assessed_date": when,
            "grade": grade,
            "structure": structure,
            "build_from": built_from,
            "done_on": done_on,
            "accepted": accepted,
            "subsidy": subsidy,
            "address": address,
        }
    )
    # A third of the renovated houses were assessed again afterwards (A): latest wins.
    again = bad & (plan == "done") & (rng.random(n) < 0.33)
    second = first.loc[again].assign(
        assessed_date=lambda f: (
            f["done_on"] + pd.to_timedelta(rng.integers(30, 200, len(f)), unit="D")
        ),
        grade="A",
        structure="砖混",
        build_from=pd.NaT,
        done_on=pd.NaT,
        accepted=False,
        subsidy=np.nan,
    )
    return pd.concat([first, second], ignore_index=True)


def _water(
    rng: np.random.Generator, head_of: np.ndarray, on_roster: np.ndarray, h: int, start: date
) -> pd.DataFrame:
    """SL_YINSHUI truth: household survey results; a few unsafe, some fixed after start."""
    surveyed = np.flatnonzero(on_roster | (rng.random(h) < 0.5))
    n = len(surveyed)
    unsafe = _pick(rng, np.ones(n, dtype=bool), P_UNSAFE_WATER, at_least=2)
    indicators = np.ones((n, 4), dtype=bool)
    which = rng.integers(0, 4, n)
    indicators[np.flatnonzero(unsafe), which[unsafe]] = False
    second = unsafe & (rng.random(n) < 0.3)
    indicators[np.flatnonzero(second), (which[second] + 1) % 4] = False
    fixed = np.where(
        unsafe & (rng.random(n) < 0.4),
        _dates_between(rng, start + timedelta(days=1), start + timedelta(days=200), n),
        _NAT,
    )
    return pd.DataFrame(
        {
            "hh": surveyed,
            "head": head_of[surveyed],
            "supply_mode": rng.choice(
                ["集中供水入户", "集中供水点", "分散供水"], size=n, p=[0.7, 0.15, 0.15]
            ).astype(object),
            "quantity_ok": indicators[:, 0],
            "quality_ok": indicators[:, 1],
            "convenience_ok": indicators[:, 2],
            "reliability_ok": indicators[:, 3],
            "water_safe": indicators.all(axis=1),
            "survey_date": _dates_between(rng, date(2024, 3, 1), start - timedelta(days=20), n),
            "fixed_on": fixed,
        }
    )


def _projects(
    rng: np.random.Generator,
    head_of: np.ndarray,
    on_roster: np.ndarray,
    h: int,
    start: date,
    horizon_end: date,
) -> pd.DataFrame:
    """NY_CHANYE truth: projects (years Y-2..Y), created and finished on dated days."""
    chosen = np.flatnonzero(_pick(rng, on_roster, P_PROJECT, at_least=3))
    n = len(chosen)
    year = start.year - rng.choice(3, size=n, p=[0.3, 0.4, 0.3])
    created = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    span = np.where(year == start.year, (horizon_end - date(start.year, 1, 1)).days, 300)
    created = created + (rng.random(n) * span).astype("timedelta64[D]")
    final = rng.choice(["已完成", "失败", "实施中"], size=n, p=[0.80, 0.07, 0.13]).astype(object)
    finished = created + rng.integers(60, 300, n).astype("timedelta64[D]")
    if n >= 3:  # a failure that alerts at start, and one two years old that must not
        year[0], final[0], created[0] = start.year - 1, "失败", _d(date(start.year - 1, 4, 1))
        finished[0] = _d(date(start.year - 1, 10, 1))
        year[1], final[1], created[1] = start.year - 2, "失败", _d(date(start.year - 2, 4, 1))
        finished[1] = _d(date(start.year - 2, 10, 1))
    finished = np.where(final == "实施中", _NAT, finished)
    return pd.DataFrame(
        {
            "project_id": [f"NY{y}{i:06d}" for i, y in enumerate(year)],
            "hh": chosen,
            "head": head_of[chosen],
            "year": year,
            "industry": rng.choice(
                ["种植", "养殖", "加工", "乡村旅游", "其他"],
                size=n,
                p=[0.45, 0.35, 0.08, 0.07, 0.05],
            ).astype(object),
            "support_mode": rng.choice(
                ["奖补", "以奖代补", "小额信贷", "资产收益分红", "技术服务", "消费帮扶"], size=n
            ).astype(object),
            "amount": rng.integers(10, 100, n) * 100.0,
            "created": created,
            "final_status": final,
            "finished": finished,
        }
    )


def _chronic(rng: np.random.Generator, persons: pd.DataFrame, start: date) -> pd.DataFrame:
    """WJ_MANBING truth: chronic-disease contracts and serious-illness treatment."""
    health = persons["health"].to_numpy()
    chronic = np.flatnonzero(health == "长期慢性病")
    serious = np.flatnonzero(health == "患大病")
    two = chronic[rng.random(len(chronic)) < 0.15]
    first = rng.integers(0, len(_DISEASES_CHRONIC), len(chronic))
    second = (
        rng.integers(0, len(_DISEASES_CHRONIC), len(two)) + 1 + first[np.searchsorted(chronic, two)]
    ) % len(_DISEASES_CHRONIC)
    second = np.where(
        second == first[np.searchsorted(chronic, two)],
        (second + 1) % len(_DISEASES_CHRONIC),
        second,
    )
    frames = [
        pd.DataFrame(
            {
                "person": chronic,
                "kind": "慢病签约",
                "disease": np.asarray(_DISEASES_CHRONIC)[first],
                "status": np.where(rng.random(len(chronic)) < 0.95, "有效", "已解约"),
            }
        ),
        pd.DataFrame(
            {
                "person": two,
                "kind": "慢病签约",
                "disease": np.asarray(_DISEASES_CHRONIC)[second],
                "status": "有效",
            }
        ),
        pd.DataFrame(
            {
                "person": serious,
                "kind": "大病专项救治",
                "disease": np.asarray(_DISEASES_SERIOUS)[
                    rng.integers(0, len(_DISEASES_SERIOUS), len(serious))
                ],
                "status": np.where(rng.random(len(serious)) < 0.6, "救治中", "已救治"),
            }
        ),
    ]
    out = pd.concat(frames, ignore_index=True)
    return out.assign(
        start_date=_dates_between(rng, date(2018, 1, 1), start - timedelta(days=10), len(out))
    )


def _bills(
    rng: np.random.Generator,
    persons: pd.DataFrame,
    h: int,
    head_of: np.ndarray,
    start: date,
    dibao: pd.DataFrame,
) -> pd.DataFrame:
    """Big hospital bills (YB-01) and their near misses, as scheduled 住院 settlements.

    kinds: 'big' (1-3 bills, 6000-20000 self-paid each, last 330 days to 120 days after start),
    'exact' (two bills 6000.00 + 4000.00 = the threshold, no alert), 'reversed' (15000 that a
    冲销 cancels two days later), 'old' (15000 dated 380 days before start: outside the window).
    """
    hh_of = persons["hh"].to_numpy()
    alive = np.isnat(persons["death_date"].to_numpy(dtype="datetime64[D]"))
    serious = (persons["health"].to_numpy() == "患大病") & alive
    patient = head_of.copy()
    sick_rows = np.flatnonzero(serious)
    patient[hh_of[sick_rows]] = sick_rows
    kinds = np.full(h, None, dtype=object)
    big = _pick(rng, np.ones(h, dtype=bool), P_BIG_BILL)
    kinds[big] = "big"
    for kind in ("exact", "reversed", "old"):
        kinds[_pick(rng, pd.isna(kinds), 0.003)] = kind
    rows = []
    for i in np.flatnonzero(pd.notna(kinds)):
        kind = kinds[i]
        if kind == "big":
            count = int(rng.integers(1, 4))
            days = rng.integers(-330, 121, count)
            selfs = rng.integers(600000, 2000000, count)
        elif kind == "exact":
            days, selfs = np.array([-100, -40]), np.array([600000, 400000])
        elif kind == "reversed":
            days, selfs = np.array([-20]), np.array([1500000])
        else:
            days, selfs = np.array([-380]), np.array([1500000])
        for j, (day, self_c) in enumerate(zip(days, selfs, strict=True)):
            rows.append(
                {
                    "person": patient[i],
                    "kind": kind,
                    "offset": int(day),
                    "self_cents": int(self_c),
                    "n": j,
                    "reverse_lag": 2 if kind == "reversed" else -1,
                }
            )
    frame = pd.DataFrame(
        rows, columns=["person", "kind", "offset", "self_cents", "n", "reverse_lag"]
    )
    n = len(frame)
    total = frame["self_cents"].to_numpy() * 5 + rng.integers(0, 10000, n)
    fund = np.round(total * 0.55).astype(np.int64)
    critical = np.round(total * 0.15).astype(np.int64)
    aid = total - frame["self_cents"].to_numpy() - fund - critical
    settle = _d(start) + frame["offset"].to_numpy().astype("timedelta64[D]")
    stay = rng.integers(5, 25, n)
    return frame.assign(
        settle_date=settle,
        admit_date=settle - stay.astype("timedelta64[D]"),
        discharge_date=settle,
        total_cents=total,
        fund_cents=fund,
        critical_cents=critical,
        aid_cents=aid,
        in_policy_cents=np.round(total * 0.9).astype(np.int64),
        hospital=np.asarray(_HOSPITALS)[rng.integers(2, len(_HOSPITALS), n)],
        diagnosis=np.asarray(["C16.9", "N18.5", "I63.9", "C34.9"])[rng.integers(0, 4, n)],
        settlement_id=[f"YB{str(s).replace('-', '')}9{k:05d}" for k, s in enumerate(settle)],
    )


# --- state on a date --------------------------------------------------------------------------


def _alive(
    county: County, day: date, lag: int = 0, persons: np.ndarray | None = None
) -> np.ndarray:
    """Persons who exist on `day` and whose death or move (if any) is not `lag` days old.

    For all persons, or for the given person indices.
    """
    dates = county.person_dates
    pick = slice(None) if persons is None else persons
    exists = _on_or_before(dates["exists_from"][pick], day)
    return exists & _after(dates["gone"][pick] + np.timedelta64(lag, "D"), day)


def roster_persons(county: County, day: date) -> np.ndarray:
    """Mask of persons on the XC roster on `day` (XC records deaths late, or never)."""
    dates = county.person_dates
    born = _on_or_before(dates["exists_from"], day)
    added = np.isnat(dates["roster_from"]) | _on_or_before(dates["roster_from"], day)
    return (
        county.persons["on_roster"].to_numpy() & born & added & _after(dates["roster_until"], day)
    )


def _head_columns(county: County, hh: np.ndarray) -> dict[str, np.ndarray]:
    heads = county.households["head"].to_numpy()[hh]
    return {
        "head_name": county.persons["name"].to_numpy()[heads],
        "head_id_number": county.persons["id_number"].to_numpy()[heads],
    }


def _frame(contract: Contract, columns: Mapping[str, object], n: int) -> pd.DataFrame:
    data = {}
    for name in contract.column_names:
        value = columns.get(name)
        data[name] = value if isinstance(value, np.ndarray | list | pd.Series) else [value] * n
    return pd.DataFrame(data, index=pd.RangeIndex(n))


def _month(dates: np.ndarray) -> np.ndarray:
    text = np.datetime_as_string(dates.astype("datetime64[M]"), unit="M").astype(object)
    text[np.isnat(dates)] = None
    return text


def _xc_hu(county: County, c: Contract, day: date) -> pd.DataFrame:
    hh = county.households.loc[county.households["on_roster"]]
    idx = hh["hh"].to_numpy()
    size = np.bincount(
        county.persons["hh"].to_numpy(),
        weights=roster_persons(county, day).astype(float),
        minlength=len(county.households),
    )[idx].astype(np.int64)
    since = _dates(hh, "monitored_from")
    monitored = _on_or_before(since, day)
    eliminated = _on_or_before(_dates(hh, "eliminated_on"), day)
    cols: dict[str, object] = {
        "household_id": hh["household_id"].to_numpy(),
        "county": COUNTY_NAME,
        "town": hh["town"].to_numpy(),
        "village": hh["village"].to_numpy(),
        "village_code": hh["village_code"].to_numpy(),
        **_head_columns(county, idx),
        "household_size": np.maximum(size, 1),
        "household_type": hh["household_type"].to_numpy(),
        "monitoring_category": np.where(monitored, hh["monitoring_category"], _NONE),
        "risk_types": np.where(monitored, hh["risk_types"], _NONE),
        "identified_month": np.where(monitored, _month(since), _NONE),
        "risk_eliminated": np.where(monitored, eliminated, _NONE),
        "elimination_method": np.where(eliminated, hh["elimination_method"], _NONE),
        "eliminated_month": np.where(eliminated, _month(_dates(hh, "eliminated_on")), _NONE),
    }
    for name in (
        "income_per_capita",
        "wage_income",
        "business_income",
        "property_income",
        "transfer_income",
        "compliant_self_pay",
        "phone",
    ):
        cols[name] = hh[name].to_numpy()
    return _frame(c, cols, len(hh))


def _xc_ren(county: County, c: Contract, day: date) -> pd.DataFrame:
    p = county.persons.loc[roster_persons(county, day)]
    students = county.students.set_index("person")["stage"]
    stage = p["person"].map(students).map(_STAGE_TEXT).fillna("非在校生").to_numpy(dtype=object)
    cols = {
        name: p[name].to_numpy()
        for name in (
            "household_id",
            "name",
            "id_number",
            "relation",
            "gender",
            "birth_date",
            "ethnicity",
            "health",
            "labour_skill",
            "medical_insured",
        )
    }
    return _frame(c, {**cols, "school_status": stage}, len(p))


def _mz_dibao(county: County, c: Contract, day: date) -> pd.DataFrame:
    d = county.dibao
    p = county.persons
    exists = _on_or_before(county.person_dates["exists_from"], day)[d["person"].to_numpy()]
    d = d.loc[exists & _on_or_before(_dates(d, "start_date"), day)]
    person = d["person"].to_numpy()
    hh = p["hh"].to_numpy()[person]
    stopped = _on_or_before(_dates(d, "stop_on"), day)
    ended = _on_or_before(_dates(d, "end_date"), day)
    status = np.where(stopped, "退出", np.where(ended, d["status"], "在保")).astype(object)
    end = np.where(stopped, _dates(d, "stop_on"), np.where(ended, _dates(d, "end_date"), _NAT))
    cols = {
        "village_code": county.households["village_code"].to_numpy()[hh],
        **_head_columns(county, hh),
        "name": p["name"].to_numpy()[person],
        "id_number": p["id_number"].to_numpy()[person],
        **{
            k: d[k].to_numpy()
            for k in (
                "assistance_type",
                "support_mode",
                "monthly_amount",
                "start_date",
                "bank_account",
            )
        },
        "end_date": end,
        "status": status,
    }
    return _frame(c, cols, len(d))


def _zj_fangwu(county: County, c: Contract, day: date) -> pd.DataFrame:
    f = county.houses.loc[_on_or_before(_dates(county.houses, "assessed_date"), day)]
    hh = f["hh"].to_numpy()
    households = county.households
    bad = f["grade"].isin(["C", "D"]).to_numpy()
    done = _on_or_before(_dates(f, "done_on"), day)
    building = _on_or_before(_dates(f, "build_from"), day)
    status = np.where(
        ~bad,
        "无需改造",
        np.where(
            done, np.where(f["accepted"], "验收", "竣工"), np.where(building, "在建", "未开工")
        ),
    )
    is_dibao = np.isin(hh, county.persons["hh"].to_numpy()[county.dibao["person"].to_numpy()])
    monitored = households["monitoring_category"].notna().to_numpy()[hh]
    tuopin = (households["household_type"] == "脱贫户").to_numpy()[hh]
    group = np.select(
        [is_dibao, monitored, tuopin], ["农村低保户", "防止返贫监测对象", "其他脱贫户"], "一般农户"
    ).astype(object)
    cols = {
        **_head_columns(county, hh),
        "village_code": households["village_code"].to_numpy()[hh],
        "address": f["address"].to_numpy(),
        "target_group": group,
        "structure": f["structure"].to_numpy(),
        "assessed_date": _dates(f, "assessed_date"),
        "grade": f["grade"].to_numpy(),
        "renovation_status": status.astype(object),
        "subsidy": f["subsidy"].to_numpy(),
    }
    return _frame(c, cols, len(f))


def _jt_xueji(county: County, c: Contract, day: date) -> pd.DataFrame:
    s = county.students
    alive = _alive(county, day, lag=30)[s["person"].to_numpy()]
    s = s.loc[alive & ~s["missing"].to_numpy()]
    person = s["person"].to_numpy()
    dropped = _on_or_before(_dates(s, "dropout_date"), day)
    status = np.where(dropped, "辍学", s["base_status"]).astype(object)
    ids = county.persons["id_number"].to_numpy()[person]
    cols = {
        "name": county.persons["name"].to_numpy()[person],
        "id_number": ids,
        "student_no": np.char.add("G", ids.astype(str)).astype(object),
        "school": s["school"].to_numpy(),
        "stage": s["stage"].to_numpy(),
        "grade": s["grade"].to_numpy(),
        "enrolment_status": status,
        "status_date": np.where(dropped, _dates(s, "dropout_date"), _dates(s, "enrol_date")),
    }
    return _frame(c, cols, len(s))


def _yb_canbao(county: County, c: Contract, day: date) -> pd.DataFrame:
    p = county.persons
    alive_recent = _alive(county, day, lag=90)
    rows = p.loc[alive_recent]
    person = rows["person"].to_numpy()
    hh = rows["hh"].to_numpy()
    dead = _on_or_before(_dates(rows, "death_date") + np.timedelta64(30, "D"), day)
    rng = rng_for(county.seed, "YB_CANBAO", "status")
    base = rng.choice(["正常参保", "未参保", "暂停"], size=len(p), p=[0.97, 0.02, 0.01])[person]
    status = np.where(dead, "终止", base).astype(object)
    scheme = np.where(rng.random(len(p)) < 0.07, "职工医保", "城乡居民医保")[person].astype(object)
    dibao = county.dibao.set_index("person")["assistance_type"]
    kind = pd.Series(person).map(dibao).to_numpy(dtype=object)
    households = county.households
    monitored = _on_or_before(_dates(households, "monitored_from"), day)[hh]
    tuopin = (households["household_type"] == "脱贫户").to_numpy()[hh]
    category = np.select(
        [
            pd.Series(kind).str.contains("特困", na=False).to_numpy(),
            pd.Series(kind).str.contains("低保", na=False).to_numpy(),
            monitored,
            tuopin,
        ],
        ["特困", "低保", "监测对象", "脱贫人口"],
        "",
    ).astype(object)
    category[(category == "") | (scheme == "职工医保")] = None
    names = np.where(pd.notna(rows["alias_name"]), rows["alias_name"], rows["name"])
    cols = {
        "name": names.astype(object),
        "id_number": rows["id_number"].to_numpy(),
        "year": day.year,
        "scheme": scheme,
        "status": status,
        "subsidised": pd.notna(category),
        "subsidy_category": category,
    }
    return _frame(c, cols, len(rows))


def _wj_manbing(county: County, c: Contract, day: date) -> pd.DataFrame:
    w = county.chronic
    w = w.loc[_alive(county, day, lag=30)[w["person"].to_numpy()]]
    person = w["person"].to_numpy()
    cols = {
        "name": county.persons["name"].to_numpy()[person],
        "id_number": county.persons["id_number"].to_numpy()[person],
        **{k: w[k].to_numpy() for k in ("kind", "disease", "status")},
        "start_date": _dates(w, "start_date"),
    }
    return _frame(c, cols, len(w))


def _rs_jiuye(county: County, c: Contract, day: date) -> pd.DataFrame:
    j = county.jobs
    person_all = j["person"].to_numpy()
    births = county.person_dates["birth_date"][person_all]
    keep = _alive(county, day, lag=30)[person_all] & (_age_on(births, day) >= 16)
    j = j.loc[keep]
    person = j["person"].to_numpy()
    changed = _on_or_before(_dates(j, "change_on"), day)
    status = np.where(changed, j["new_status"], j["status"]).astype(object)
    jobless = status == "未就业"
    own = status == "自主创业"
    started = np.where(changed, _dates(j, "change_on"), _dates(j, "start_date"))
    cols = {
        "name": county.persons["name"].to_numpy()[person],
        "id_number": county.persons["id_number"].to_numpy()[person],
        "employment_status": status,
        "employer": np.where(jobless | own, _NONE, j["employer"]).astype(object),
        "employer_credit_code": np.where(jobless | own, _NONE, j["credit_code"]).astype(object),
        "start_date": np.where(jobless, _NAT, started),
        "end_date": np.where(jobless & changed, _dates(j, "change_on"), _NAT),
        "monthly_income": np.where(
            jobless, np.nan, np.where(status == "公益岗位", 1000.0, j["income"].to_numpy())
        ),
    }
    return _frame(c, cols, len(j))


def _cl_canji(county: County, c: Contract, day: date) -> pd.DataFrame:
    d = county.disability
    d = d.loc[
        _on_or_before(county.person_dates["exists_from"], day)[d["person"].to_numpy()]
        & _on_or_before(_dates(d, "issue_date"), day)
    ]
    person = d["person"].to_numpy()
    cancelled = _on_or_before(_dates(d, "cancel_on"), day)
    status = np.where(cancelled, "注销", d["base_status"]).astype(object)
    paid = status == "有效"
    cols = {
        "name": county.persons["name"].to_numpy()[person],
        "id_number": county.persons["id_number"].to_numpy()[person],
        **{k: d[k].to_numpy() for k in ("cert_no", "category", "level")},
        "issue_date": _dates(d, "issue_date"),
        "cert_status": status,
        "living_subsidy": np.where(paid, d["living_subsidy"], np.nan),
        "care_subsidy": np.where(paid, d["care_subsidy"], np.nan),
    }
    return _frame(c, cols, len(d))


def _sl_yinshui(county: County, c: Contract, day: date) -> pd.DataFrame:
    w = county.water
    fixed = _on_or_before(_dates(w, "fixed_on"), day)
    hh = w["hh"].to_numpy()
    cols: dict[str, object] = {
        **_head_columns(county, hh),
        "village_code": county.households["village_code"].to_numpy()[hh],
        "supply_mode": w["supply_mode"].to_numpy(),
    }
    for name in ("quantity_ok", "quality_ok", "convenience_ok", "reliability_ok", "water_safe"):
        cols[name] = (w[name].to_numpy() | fixed).astype(object)
    cols["survey_date"] = np.where(fixed, _dates(w, "fixed_on"), _dates(w, "survey_date"))
    return _frame(c, cols, len(w))


SNAPSHOT_BUILDERS = {
    "XC_HU": _xc_hu,
    "XC_REN": _xc_ren,
    "MZ_DIBAO": _mz_dibao,
    "ZJ_FANGWU": _zj_fangwu,
    "JT_XUEJI": _jt_xueji,
    "YB_CANBAO": _yb_canbao,
    "WJ_MANBING": _wj_manbing,
    "RS_JIUYE": _rs_jiuye,
    "CL_CANJI": _cl_canji,
    "SL_YINSHUI": _sl_yinshui,
}


# --- events -----------------------------------------------------------------------------------


def _event_days(county: County, dataset: str, day: date) -> tuple[date, date]:
    """The event dates delivered on `day`: the backlog on the first night, else that day."""
    if day == county.start:
        return day - timedelta(days=BACKLOG_DAYS.get(dataset, WINDOW_DAYS)), day
    return day, day


def _settlements_on(county: County, day: date) -> dict[str, np.ndarray]:
    """Ordinary settlements of one day (正常), each with its reversal lag (-1: not reversed)."""
    rng = rng_for(county.seed, "YB_JIESUAN", day.toordinal())
    n_persons = len(county.persons)
    drawn = rng.integers(0, n_persons, int(rng.poisson(RATE_SETTLEMENT * n_persons)))
    k = len(drawn)
    visit = rng.choice(["普通门诊", "门诊慢特病", "住院"], size=k, p=[0.5, 0.2, 0.3])
    total = np.where(
        visit == "住院",
        rng.lognormal(np.log(600000), 0.7, k),
        np.where(visit == "门诊慢特病", rng.uniform(20000, 200000, k), rng.uniform(5000, 50000, k)),
    ).astype(np.int64)
    fund = np.round(total * np.where(visit == "普通门诊", 0.4, 0.6)).astype(np.int64)
    critical = np.where(total > 2000000, np.round((total - 2000000) * 0.6), 0).astype(np.int64)
    aid = np.where(county.on_dibao[drawn], np.round((total - fund - critical) * 0.5), 0).astype(
        np.int64
    )
    stay = rng.integers(3, 20, k).astype("timedelta64[D]")
    inpatient = visit == "住院"
    lag = np.where(rng.random(k) < P_REVERSAL, rng.integers(0, 4, k), -1)
    hospital = np.asarray(_HOSPITALS)[rng.integers(0, len(_HOSPITALS), k)]
    diagnosis = np.asarray(_DIAGNOSES)[rng.integers(0, len(_DIAGNOSES), k)]
    keep = _alive(county, day, persons=drawn)  # the dead do not see doctors
    return {
        "settlement_id": _join(f"YB{day:%Y%m%d}", zfill(np.arange(k), 6))[keep],
        "person": drawn[keep],
        "visit_type": visit[keep].astype(object),
        "admit_date": np.where(inpatient, _d(day) - stay, _NAT)[keep],
        "discharge_date": np.where(inpatient, _d(day), _NAT)[keep],
        "settle_date": np.full(k, _d(day))[keep],
        "hospital": hospital[keep].astype(object),
        "diagnosis": diagnosis[keep].astype(object),
        "total_cents": total[keep],
        "in_policy_cents": np.round(total * 0.9).astype(np.int64)[keep],
        "fund_cents": fund[keep],
        "critical_cents": critical[keep],
        "aid_cents": aid[keep],
        "self_cents": (total - fund - critical - aid)[keep],
        "reverse_lag": lag[keep],
    }


def _yb_jiesuan(county: County, c: Contract, day: date) -> pd.DataFrame:
    lo, hi = _event_days(county, "YB_JIESUAN", day)
    days = [_settlements_on(county, lo + timedelta(days=i)) for i in range(-3, (hi - lo).days + 1)]
    daily = pd.DataFrame({k: np.concatenate([d[k] for d in days]) for k in days[0]})
    frames = [daily, county.bills.drop(columns=["kind", "offset", "n"])]
    settled = pd.concat(frames, ignore_index=True)
    sdate = _dates(settled, "settle_date")
    lag = settled["reverse_lag"].to_numpy()
    rev_date = np.where(lag >= 0, sdate + lag.astype("timedelta64[D]"), _NAT)
    in_range = (sdate >= _d(lo)) & (sdate <= _d(hi))
    reversed_ = ~np.isnat(rev_date) & (rev_date >= _d(lo)) & (rev_date <= _d(hi))
    normal = settled.loc[in_range].assign(settle_kind="正常", sign=1)
    reversal = settled.loc[reversed_].assign(
        settle_kind="冲销", sign=-1, settle_date=rev_date[reversed_]
    )
    rows = pd.concat([normal, reversal], ignore_index=True).sort_values(
        ["settle_date", "settlement_id", "sign"], ascending=[True, True, False], ignore_index=True
    )
    person = rows["person"].to_numpy(dtype=np.int64)
    sign = rows["sign"].to_numpy()

    def money(col: str) -> np.ndarray:
        return rows[col].to_numpy(dtype=float) * sign / 100.0

    cols = {
        "settlement_id": rows["settlement_id"].to_numpy(),
        "settle_kind": rows["settle_kind"],
        "name": county.persons["name"].to_numpy()[person],
        "id_number": county.persons["id_number"].to_numpy()[person],
        "visit_type": np.where(pd.isna(rows["visit_type"]), "住院", rows["visit_type"]),
        "admit_date": _dates(rows, "admit_date"),
        "discharge_date": _dates(rows, "discharge_date"),
        "settle_date": _dates(rows, "settle_date"),
        "hospital": rows["hospital"].to_numpy(),
        "diagnosis": rows["diagnosis"].to_numpy(),
        "total_cost": money("total_cents"),
        "in_policy_cost": money("in_policy_cents"),
        "fund_paid": money("fund_cents"),
        "critical_illness_paid": np.where(
            rows["critical_cents"] != 0, money("critical_cents"), np.nan
        ),
        "medical_aid_paid": np.where(rows["aid_cents"] != 0, money("aid_cents"), np.nan),
        "other_paid": np.nan,
        "self_burden": money("self_cents"),
    }
    return _frame(c, cols, len(rows))


def _mz_linshi(county: County, c: Contract, day: date) -> pd.DataFrame:
    lo, hi = _event_days(county, "MZ_LINSHI", day)
    frames = []
    heads = county.households["head"].to_numpy()
    reasons = ("因病支出过大", "房屋火灾", "交通事故", "子女就学困难", "突发疾病", "自然灾害")
    for offset in range((hi - lo).days + 1):
        d = lo + timedelta(days=offset)
        rng = rng_for(county.seed, "MZ_LINSHI", d.toordinal())
        k = int(rng.poisson(RATE_RELIEF * len(heads)))
        if not k:
            continue
        person = (
            heads[rng.choice(len(heads), size=k, replace=False)]
            if k <= len(heads)
            else heads[rng.integers(0, len(heads), k)]
        )
        frames.append(
            pd.DataFrame(
                {
                    "case_id": [f"LS{d:%Y%m%d}{i:04d}" for i in range(k)],
                    "person": person,
                    "relief_type": rng.choice(["急难型", "支出型"], size=k),
                    "reason": np.asarray(reasons)[rng.integers(0, len(reasons), k)],
                    "amount": rng.integers(10, 200, k) * 100.0,
                    "approved_date": _d(d),
                }
            )
        )
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            {
                "case_id": [],
                "person": np.zeros(0, np.int64),
                "relief_type": [],
                "reason": [],
                "amount": [],
                "approved_date": np.zeros(0, "datetime64[D]"),
            }
        )
    )
    person = rows["person"].to_numpy(dtype=np.int64)
    cols = {
        "case_id": rows["case_id"].to_numpy(),
        "name": county.persons["name"].to_numpy()[person],
        "id_number": county.persons["id_number"].to_numpy()[person],
        **{k: rows[k].to_numpy() for k in ("relief_type", "reason", "amount")},
        "approved_date": _dates(rows, "approved_date"),
    }
    return _frame(c, cols, len(rows))


def _jt_zizhu(county: County, c: Contract, day: date) -> pd.DataFrame:
    lo, hi = _event_days(county, "JT_ZIZHU", day)
    s = county.students
    person = s["person"].to_numpy()
    households = county.households
    hh = county.persons["hh"].to_numpy()[person]
    poor = (
        (households["household_type"] == "脱贫户").to_numpy()
        | households["monitoring_category"].notna().to_numpy()
    )[hh]
    stage = s["stage"].to_numpy()
    program = np.select(
        [
            np.isin(stage, ["中职", "高职"]) & poor,
            np.isin(stage, ["小学", "初中"]),
            (stage == "普通高中") & poor,
        ],
        ["雨露计划", "营养改善计划", "国家助学金"],
        "",
    )
    amount = np.select([program == "雨露计划", program == "营养改善计划"], [1500.0, 400.0], 1000.0)
    eligible = np.flatnonzero(program != "")
    frames = []
    for offset in range((hi - lo).days + 1):
        d = lo + timedelta(days=offset)
        if d.day not in (10, 25):
            continue
        rng = rng_for(county.seed, "JT_ZIZHU", d.toordinal())
        alive = _alive(county, d)[person[eligible]]
        paid = eligible[alive & (rng.random(len(eligible)) < P_PAYDAY_SHARE)]
        frames.append(
            pd.DataFrame(
                {
                    "payment_id": [f"ZZ{d:%Y%m%d}{i:05d}" for i in range(len(paid))],
                    "person": person[paid],
                    "program": program[paid],
                    "term": "春季" if 3 <= d.month <= 8 else "秋季",
                    "year": d.year,
                    "amount": amount[paid],
                    "paid_date": _d(d),
                }
            )
        )
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            {
                "payment_id": [],
                "person": np.zeros(0, np.int64),
                "program": [],
                "term": [],
                "year": [],
                "amount": [],
                "paid_date": np.zeros(0, "datetime64[D]"),
            }
        )
    )
    who = rows["person"].to_numpy(dtype=np.int64)
    cols = {
        "payment_id": rows["payment_id"].to_numpy(),
        "name": county.persons["name"].to_numpy()[who],
        "id_number": county.persons["id_number"].to_numpy()[who],
        **{k: rows[k].to_numpy() for k in ("program", "term", "year", "amount")},
        "paid_date": _dates(rows, "paid_date"),
    }
    return _frame(c, cols, len(rows))


def _ny_chanye(county: County, c: Contract, day: date) -> pd.DataFrame:
    pr = county.projects
    created = _dates(pr, "created")
    finished = _dates(pr, "finished")
    if day == county.start:
        rows = pr.loc[_on_or_before(created, day)]
        status = np.where(
            _on_or_before(_dates(rows, "finished"), day), rows["final_status"], "实施中"
        )
    else:
        mask = (created == _d(day)) | (finished == _d(day))
        rows = pr.loc[mask]
        status = np.where(_dates(rows, "finished") == _d(day), rows["final_status"], "实施中")
    cols = {
        "project_id": rows["project_id"].to_numpy(),
        **_head_columns(county, rows["hh"].to_numpy()),
        **{k: rows[k].to_numpy() for k in ("industry", "support_mode", "amount", "year")},
        "project_status": status.astype(object),
    }
    return _frame(c, cols, len(rows))


def _ga_biandong(county: County, c: Contract, day: date) -> pd.DataFrame:
    lo, hi = _event_days(county, "GA_BIANDONG", day)
    p = county.persons
    dates = county.person_dates
    births = np.where(dates["exists_from"] == dates["birth_date"], dates["birth_date"], _NAT)
    kinds = (
        ("死亡", "D", dates["death_date"], ("病故", "自然死亡", "意外死亡")),
        ("出生", "B", births, ("新生儿落户",)),
        ("迁出", "O", dates["migrate_out"], ("投靠子女", "婚迁", "务工迁出")),
        ("迁入", "I", dates["migrate_in"], ("婚迁",)),
        ("服兵役", "A", dates["army_date"], ("应征入伍",)),
    )
    frames = []
    for kind, code, when, reasons in kinds:
        hit = np.flatnonzero(~np.isnat(when) & (when >= _d(lo)) & (when <= _d(hi)))
        stamp = compact_dates(when[hit])
        frames.append(
            pd.DataFrame(
                {
                    "event_id": _join("GA", stamp, code, zfill(hit, 7)),
                    "person": hit,
                    "change_type": kind,
                    "change_date": when[hit],
                    "reason": np.asarray(reasons, dtype=object)[hit % len(reasons)],
                }
            )
        )
    rows = pd.concat(frames, ignore_index=True).sort_values(
        ["change_date", "event_id"], ignore_index=True
    )
    person = rows["person"].to_numpy(dtype=np.int64)
    cols = {
        "event_id": rows["event_id"].to_numpy(),
        "name": p["name"].to_numpy()[person],
        "id_number": p["id_number"].to_numpy()[person],
        "change_type": rows["change_type"].to_numpy(),
        "change_date": _dates(rows, "change_date"),
        "reason": rows["reason"].to_numpy(),
    }
    return _frame(c, cols, len(rows))


def _xc_hecha(county: County, c: Contract, day: date) -> pd.DataFrame:
    """Placeholder verification feedback: alert ids are made up as <rule>-<household_id>."""
    rng = rng_for(county.seed, "XC_HECHA", day.toordinal())
    hh = county.households.loc[county.households["on_roster"]]
    k = min(len(hh), 5)
    pick = hh.iloc[np.sort(rng.choice(len(hh), size=k, replace=False))]
    rules = np.asarray(["YB-01", "ZJ-01", "SL-01", "INC-01", "RS-01"])[rng.integers(0, 5, k)]
    cols = {
        "alert_id": _join(rules, "-", pick["household_id"].to_numpy().astype(str)),
        "outcome": rng.choice(list(c.column("outcome").values), size=k).astype(object),
        "checked_date": _d(day),
        "checker": np.asarray(_CLERKS, dtype=object)[rng.integers(0, len(_CLERKS), k)],
    }
    return _frame(c, cols, k)


def verification_rows(
    county: County, published_alerts: pd.DataFrame, day: date, *, k: int = 3
) -> pd.DataFrame:
    """The bureau's verification feedback (XC_HECHA rows) on `k` of the open alerts it was
    published: what a township clerk sends back after checking them on `day`.

    Deterministic by seed and date; the outcomes go round the contract's values in order.
    """
    c = load_contracts()["XC_HECHA"]
    outcomes = c.column("outcome").values
    open_ids = np.sort(
        published_alerts.loc[published_alerts["status"] == "open", "alert_id"].to_numpy(str)
    )
    rng = rng_for(county.seed, "XC_HECHA-verify", day.toordinal())
    n = min(k, len(open_ids))
    picked = open_ids[np.sort(rng.choice(len(open_ids), size=n, replace=False))]
    cols = {
        "alert_id": picked.astype(object),
        "outcome": np.asarray([outcomes[i % len(outcomes)] for i in range(n)], dtype=object),
        "checked_date": _d(day),
        "checker": np.asarray(_CLERKS, dtype=object)[rng.integers(0, len(_CLERKS), n)],
    }
    return _frame(c, cols, n)


EVENT_BUILDERS = {
    "YB_JIESUAN": _yb_jiesuan,
    "MZ_LINSHI": _mz_linshi,
    "JT_ZIZHU": _jt_zizhu,
    "NY_CHANYE": _ny_chanye,
    "GA_BIANDONG": _ga_biandong,
    "XC_HECHA": _xc_hecha,
}


def dataset_rows(county: County, dataset: str, exchange_date: date) -> pd.DataFrame:
    """The clean, canonical rows `dataset` delivers for `exchange_date` (a new frame).

    Snapshot datasets: the department's full current list on that date. Events datasets: the
    events dated that day (on the county's first night, the backlog; see the module docstring).
    Columns are the contract's canonical names; values are canonical (dates as datetime64,
    amounts as floats, bools as bools, enums as their canonical values, missing as None/NaN).
    A dataset with no builder here is made from its contract (`from_contract`), or refused
    with a ConfigurationError that says what its contract lacks for that.
    """
    contract = load_contracts()[dataset]
    builder = SNAPSHOT_BUILDERS.get(dataset) or EVENT_BUILDERS.get(dataset) or contract_rows
    return builder(county, contract, exchange_date)


def _due_rows(county: County, exchange_date: date) -> dict[str, pd.DataFrame | None]:
    """Datasets due on the date, with the rows already built for events datasets."""
    due: dict[str, pd.DataFrame | None] = {}
    for name, contract in load_contracts().items():
        if name in ON_REQUEST:
            continue
        if contract.mode == "snapshot":
            when = SCHEDULE.get(name, 0)
            if exchange_date == county.start or when == "daily" or exchange_date.weekday() == when:
                due[name] = None
        elif len(rows := dataset_rows(county, name, exchange_date)):
            due[name] = rows
    return due


def datasets_due(county: County, exchange_date: date) -> list[str]:
    """Datasets delivered on `exchange_date` (see `SCHEDULE`; events only when they have rows)."""
    return list(_due_rows(county, exchange_date))


# --- writing deliveries -----------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveredFile:
    """One file written to the landing area."""

    dataset: str
    dept: str
    path: Path
    fmt: str
    encoding: str | None
    title_rows: int
    rows: int  # data rows in the file, duplicates and conflict copies included
    duplicates: int  # identical duplicate rows injected
    sha256: str


@dataclass(frozen=True)
class Defect:
    """One injected defect, located as a person opening the file sees it."""

    dataset: str
    source_file: str
    source_row: int
    column: str
    rule: str


@dataclass(frozen=True)
class NightManifest:
    """Every file written for one exchange date and every defect injected into them."""

    exchange_date: date
    files: tuple[DeliveredFile, ...]
    defects: tuple[Defect, ...]

    def file(self, dataset: str) -> DeliveredFile:
        """The file written for `dataset` (KeyError if none)."""
        for f in self.files:
            if f.dataset == dataset:
                return f
        raise KeyError(dataset)

    def defects_of(self, dataset: str) -> list[Defect]:
        return [d for d in self.defects if d.dataset == dataset]

    def defects_frame(self) -> pd.DataFrame:
        """The defects as a frame: dataset, source_file, source_row, column, rule."""
        return pd.DataFrame(
            [d.__dict__ for d in self.defects],
            columns=["dataset", "source_file", "source_row", "column", "rule"],
        )


def delivery_path(
    landing_dir: Path, contract: Contract, exchange_date: date, fmt: str | None = None
) -> Path:
    """landing/<DEPT>/<DATASET>_<YYYYMMDD>.<ext>."""
    ext = EXTENSIONS[fmt or contract.format]
    return Path(landing_dir) / contract.dept / f"{contract.dataset}_{exchange_date:%Y%m%d}.{ext}"


def _choose_encoding(contract: Contract, rng: np.random.Generator, messy: bool) -> str | None:
    if contract.format != "csv":
        return "utf-8" if contract.format == "json" else None
    declared = contract.encoding or "utf-8"
    if messy and rng.random() < 0.2:  # delivered in another accepted encoding
        others = [e for e in ACCEPTED_ENCODINGS if e != declared]
        return others[int(rng.integers(0, len(others)))]
    return declared


def _layout(
    contract: Contract,
    common: Common,
    exchange_date: date,
    n: int,
    messy: bool,
    rng: np.random.Generator,
) -> tuple[list[str], list[list[object]]]:
    """Title lines and footer rows of an XLSX delivery."""
    if contract.format != "xlsx":
        return [], []
    title = contract.title.split(" (")[0].strip()
    dept = common.departments.get(contract.dept, contract.dept)
    lines = [
        f"{COUNTY_NAME}{exchange_date.year}年{title}名单",
        f"填报单位：{COUNTY_NAME}{dept}    导出日期：{exchange_date:%Y-%m-%d}",
        "说明：金额单位为元",
    ][: contract.title_rows]
    footers: list[list[object]] = []
    if messy:
        clerk = _CLERKS[int(rng.integers(0, len(_CLERKS)))]
        footers = [
            ["合计", "", f"共{n}条"],
            [f"填报人：{clerk}", "", f"制表时间：{exchange_date:%Y-%m-%d}"],
        ]
    return lines, footers


@dataclass(frozen=True)
class Delivery:
    """A rendered delivery: its bytes, where it goes, and what was injected."""

    dataset: str
    path: Path
    content: bytes
    file: DeliveredFile
    defects: tuple[Defect, ...]


def make_delivery(
    county: County,
    landing_dir: Path,
    dataset: str,
    exchange_date: date,
    *,
    messy: bool = True,
    defects: bool = True,
    defect_rate: float = 0.015,
    variant: int = 0,
    keep_fraction: float = 1.0,
    rows: pd.DataFrame | None = None,
    drop_columns: Sequence[str] = (),
    extra_columns: dict[str, list[object]] | None = None,
    encoding: str | None = None,
) -> Delivery:
    """Render one dataset's delivery for a date without writing it (see `write_delivery`).

    `variant` > 0 gives different bytes for the same date (a re-delivery); `keep_fraction` < 1
    keeps only the first rows (a truncated export); `rows` replaces the county's rows.
    """
    contract = load_contracts()[dataset]
    common = load_common()
    rng = rng_for(county.seed, dataset, exchange_date.toordinal(), variant)
    canonical = dataset_rows(county, dataset, exchange_date) if rows is None else rows
    if keep_fraction < 1.0:
        canonical = canonical.iloc[: int(len(canonical) * keep_fraction)].reset_index(drop=True)
    prepared = prepare_delivery(
        contract,
        canonical,
        exchange_date=exchange_date,
        fmt=contract.format,
        common=common,
        rng=rng,
        messy=messy,
        defects=defects,
        defect_rate=defect_rate,
    )
    enc = encoding or _choose_encoding(contract, rng, messy)
    titles, footers = _layout(contract, common, exchange_date, prepared.n_rows, messy, rng)
    content = render_delivery(
        contract,
        prepared.values,
        fmt=contract.format,
        encoding=enc,
        title_rows=titles,
        footer_rows=footers,
        headers=prepared.headers,
        drop_columns=drop_columns,
        extra_columns=extra_columns,
    )
    path = delivery_path(landing_dir, contract, exchange_date)
    found = tuple(
        Defect(
            dataset, path.name, source_row(contract.format, len(titles), d.row), d.column, d.rule
        )
        for d in prepared.defects
    )
    file = DeliveredFile(
        dataset=dataset,
        dept=contract.dept,
        path=path,
        fmt=contract.format,
        encoding=enc,
        title_rows=len(titles),
        rows=prepared.n_rows,
        duplicates=prepared.duplicates,
        sha256=hashlib.sha256(content).hexdigest(),
    )
    return Delivery(dataset, path, content, file, found)


def write_delivery(
    county: County, landing_dir: Path, dataset: str, exchange_date: date, **options: object
) -> Delivery:
    """Render one dataset's delivery (options as `make_delivery`) and write it to landing."""
    delivery = make_delivery(county, landing_dir, dataset, exchange_date, **options)  # type: ignore[arg-type]
    delivery.path.parent.mkdir(parents=True, exist_ok=True)
    delivery.path.write_bytes(delivery.content)
    return delivery


def write_night(
    county: County,
    landing_dir: Path,
    exchange_date: date,
    *,
    messy: bool = True,
    defects: bool = True,
    datasets: Sequence[str] | None = None,
    defect_rate: float = 0.015,
) -> NightManifest:
    """Write every delivery of one night to `landing_dir` and return what was written.

    `datasets` overrides the schedule (a dataset named there is written even with no rows,
    e.g. XC_HECHA, which is otherwise never delivered).
    """
    due = dict.fromkeys(datasets) if datasets is not None else _due_rows(county, exchange_date)
    written = [
        write_delivery(
            county,
            Path(landing_dir),
            name,
            exchange_date,
            messy=messy,
            defects=defects,
            defect_rate=defect_rate,
            rows=rows,
        )
        for name, rows in due.items()
    ]
    return NightManifest(
        exchange_date, tuple(d.file for d in written), tuple(x for d in written for x in d.defects)
    )


def redeliver(
    county: County,
    landing_dir: Path,
    dataset: str,
    exchange_date: date,
    *,
    defects: bool = False,
    variant: int = 1,
) -> Delivery:
    """Overwrite a night's file with a different delivery for the same dataset and date
    (by default a corrected one: messy but without defects)."""
    return write_delivery(
        county,
        Path(landing_dir),
        dataset,
        exchange_date,
        messy=True,
        defects=defects,
        variant=variant,
    )


def truncated_snapshot(
    county: County,
    landing_dir: Path,
    dataset: str,
    exchange_date: date,
    *,
    keep_fraction: float = 0.4,
) -> Delivery:
    """Write a snapshot export cut short (only the first `keep_fraction` of its rows)."""
    if load_contracts()[dataset].mode != "snapshot":
        raise ValueError(f"{dataset} is not a snapshot dataset")
    return write_delivery(
        county,
        Path(landing_dir),
        dataset,
        exchange_date,
        messy=True,
        defects=False,
        keep_fraction=keep_fraction,
        variant=2,
    )


# --- the intake benchmark file ----------------------------------------------------------------


def _names_for(keys: np.ndarray, male: np.ndarray) -> np.ndarray:
    """A name per integer key (the same key always gets the same name)."""
    h = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)

    def part(shift: int, size: int) -> np.ndarray:
        return ((h >> np.uint64(shift)) % np.uint64(size)).astype(np.int64)

    surname = np.asarray(SURNAMES)[part(0, len(SURNAMES))]
    men, women = np.asarray(MALE_CHARS), np.asarray(FEMALE_CHARS)
    g1 = np.where(male, men[part(8, len(men))], women[part(8, len(women))])
    g2 = np.where(male, men[part(16, len(men))], women[part(16, len(women))])
    g2 = np.where(part(32, 250) == 0, np.asarray(RARE_CHARS)[part(40, len(RARE_CHARS))], g2)
    g2 = np.where(part(24, 4) == 0, "", g2)
    return np.char.add(np.char.add(surname, g1), g2).astype(object)


def _tile(template: pd.DataFrame, contract: Contract, rows: int) -> dict[str, np.ndarray]:
    """`rows` rows (as canonical arrays) made of copies of `template`, ids and text keys unique.

    An id keeps its birth date and sex digit; its area code and sequence encode (copy, rank of
    the id among the template's ids with that birth date and sex), so copies never collide and
    an id repeated across columns (id_number, head_id_number) maps to the same new id. Names
    paired with ids (name/id_number, head_name/head_id_number) are drawn anew from the new id.
    """
    base = canonical_arrays(contract, template)
    reps = -(-rows // max(1, len(template)))
    tile = np.repeat(np.arange(reps, dtype=np.int64), len(template))[:rows]
    src = np.tile(np.arange(len(template)), reps)[:rows]
    out = {name: values[src] for name, values in base.items()}
    id_cols = [c.name for c in contract.columns if c.type == "id18"]
    numbers: dict[str, np.ndarray] = {}
    if id_cols:
        old = pd.Series(
            pd.unique(np.concatenate([base[c][pd.notna(base[c])] for c in id_cols])), dtype=object
        )
        parity = old.str.slice(16, 17).astype(int).to_numpy() % 2
        birth = old.str.slice(6, 14).astype(np.int64).to_numpy()
        rank = pd.Series(birth * 2 + parity).groupby(birth * 2 + parity).cumcount().to_numpy()
        width = int(rank.max(initial=0)) + 1
        position = pd.Index(old)
        for name in id_cols:
            known_t = pd.notna(base[name])
            where_t = np.full(len(template), -1, dtype=np.int64)
            where_t[known_t] = position.get_indexer(base[name][known_t])
            where = where_t[src]
            known = where >= 0
            w = where[known]
            code = tile[known] * width + rank[w]
            first17 = (
                (620000 + code // 450) * 10**11 + birth[w] * 1000 + ((code % 450) * 2 + parity[w])
            )
            new = out[name].copy()
            new[known] = ids_from_numbers(first17)
            out[name] = new
            numbers[name] = np.where(known, 0, -1)
            numbers[name][known] = first17 * 2 + parity[w]
    for d in contract.derive:  # e.g. CL certificate = id + codes: keep it consistent
        if d.from_column in out and d.column in id_cols:
            suffix = pd.Series(out[d.from_column], dtype=object).str.slice(d.take_first)
            out[d.from_column] = (pd.Series(out[d.column], dtype=object) + suffix).to_numpy(
                dtype=object
            )
    for name in contract.key:
        if contract.column(name).type == "text":
            out[name] = _join(out[name].astype(str), "-", tile)
    for name_col, id_col in (("name", "id_number"), ("head_name", "head_id_number")):
        if name_col in out and id_col in numbers:
            known = numbers[id_col] >= 0
            names = out[name_col].copy()
            names[known] = _names_for(numbers[id_col][known] // 2, numbers[id_col][known] % 2 == 1)
            out[name_col] = names
    return out


def write_big_csv(
    path: Path,
    rows: int = 1_000_000,
    seed: int = 0,
    dataset: str = "MZ_DIBAO",
    encoding: str = "gb18030",
    defect_rate: float = 0.01,
    *,
    exchange_date: date = date(2025, 3, 12),
) -> Path:
    """Write one large, messy CSV delivery of `dataset` for the intake benchmark.

    Rows are copies of a small synthetic county's rows with unique ids (birth date and sex kept)
    and fresh names; messy forms, defects and duplicates are those of `write_night`.
    """
    return write_big_delivery(
        path,
        rows,
        seed,
        dataset,
        fmt="csv",
        encoding=encoding,
        defect_rate=defect_rate,
        exchange_date=exchange_date,
    )


def write_big_delivery(
    path: Path,
    rows: int,
    seed: int = 0,
    dataset: str = "MZ_DIBAO",
    *,
    fmt: str = "csv",
    encoding: str | None = None,
    defect_rate: float = 0.01,
    exchange_date: date = date(2025, 3, 12),
) -> Path:
    """Write one large, messy delivery of `dataset` as CSV, XLSX or JSON (see `write_big_csv`).

    The messy forms are those of `fmt` (an XLSX gets real date and number cells).
    """
    contract = load_contracts()[dataset]
    common = load_common()
    county = build_county(seed, 3000, start=exchange_date)
    template = dataset_rows(county, dataset, exchange_date)
    if template.empty:
        raise ValueError(f"the template county has no {dataset} rows")
    canonical = _tile(template, contract, rows)
    rng = rng_for(seed, dataset, exchange_date.toordinal(), "big")
    prepared: PreparedDelivery = prepare_delivery(
        contract,
        canonical,
        exchange_date=exchange_date,
        fmt=fmt,
        common=common,
        rng=rng,
        messy=True,
        defects=defect_rate > 0,
        defect_rate=defect_rate,
    )
    content = render_delivery(
        contract, prepared.values, fmt=fmt, encoding=encoding, headers=prepared.headers
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


__all__ = [
    "COUNTY_CODE",
    "SCHEDULE",
    "THRESHOLDS",
    "County",
    "Defect",
    "DeliveredFile",
    "Delivery",
    "NightManifest",
    "build_county",
    "credit_code",
    "dataset_rows",
    "datasets_due",
    "delivery_path",
    "fresh_ids",
    "load_divisions",
    "make_delivery",
    "redeliver",
    "roster_persons",
    "truncated_snapshot",
    "write_big_csv",
    "write_big_delivery",
    "write_delivery",
    "write_night",
]
