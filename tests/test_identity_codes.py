"""Identity codes against python-stdnum (cn.ric, cn.uscc) as the reference oracle.

Property-based (hypothesis) over generated valid codes and their mutations, in batches, so the
vectorised code paths (mixed lengths and shapes in one column) are what is tested. Where the
project deliberately differs from stdnum (docs/intake.md, "Identity codes"), the expected
verdict is stdnum's with exactly that difference applied, and nothing else:

GB 11643 (ids)
  - place: stdnum looks the 6-digit code up in its county list and requires it to have existed
    in the birth year; the project checks digits 1-2 against the GB/T 2260 provinces (plus 83,
    Taiwan residents' residence permits, which stdnum does not know);
  - birth date: stdnum accepts any real date; the project requires 1900-01-01 .. exchange date;
  - 15- and 20-character forms are upgraded / cut (the spec), stdnum rejects them;
  - which defect is named when several apply: characters, length, province, birth date, check
    character (stdnum raises on the check character before it looks at the date or place).
GB 32100 (credit codes)
  - positions 1-2 may be letters of the code alphabet (N2…: rural collective economic
    organisations); stdnum requires digits there;
  - spaces and hyphens are defects (stdnum's compact() removes them before checking);
  - characters are named before length.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path

import pandas as pd
import pytest
import stdnum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stdnum.cn import ric, uscc
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength

from domain.identity_codes import (
    CC_ALPHABET,
    ID_CHECK_CHARS,
    IDENTITY_RULE_TEXT,
    credit_code_check_char,
    credit_code_defects,
    credit_code_valid,
    id18_check_char,
    id18_valid,
    ids_from_numbers,
    normalise_id18,
    province_codes,
    upgrade_id15,
)
from expectations.contract import get_contract, load_common
from tasks.validate import validate_rows

D = date(2025, 3, 12)  # the exchange date: birth dates after it are impossible
COMMON = load_common()
PROPERTY = settings(
    max_examples=80,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@cache
def stdnum_places() -> tuple[dict[str, bool], frozenset[str]]:
    """stdnum's county codes (True: valid in every year) and its province codes."""
    path = Path(stdnum.__file__).parent / "cn" / "loc.dat"
    counties: dict[str, bool] = {}
    provinces: set[str] = set()
    province = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        code, _, props = line.strip().partition(" ")
        if not line.startswith(" "):
            province = code
            provinces.add(code)
        else:
            counties[province + code] = 'county="[' not in props
    return counties, frozenset(provinces)


def stdnum_ric(value: str) -> str:
    """stdnum's verdict on an id: valid, length, format, checksum, date or place."""
    try:
        ric.validate(value)
    except KeyError:  # stdnum 2.2 raises KeyError for a county code missing from its list
        return "place"
    except InvalidLength:
        return "length"
    except InvalidFormat:
        return "format"
    except InvalidChecksum:
        return "checksum"
    except InvalidComponent:
        try:
            ric.get_birth_date(value)
        except InvalidComponent:
            return "date"
        return "place"
    return "valid"


def in_range(value: str) -> bool:
    """The birth date (digits 7-14, a real date) is from 1900-01-01 to the exchange date."""
    return date(1900, 1, 1) <= ric.get_birth_date(value) <= D


def with_check(first17: str) -> str:
    return first17 + ric.calc_check_digit(first17 + "0")


# --- strategies -------------------------------------------------------------------------------


@st.composite
def valid_ids(
    draw: st.DrawFn, *, current_only: bool = False, born: tuple[date, date] = (date(1900, 1, 1), D)
) -> str:
    """An id stdnum's data knows the county of (`current_only`: in every year), born in `born`."""
    counties, _ = stdnum_places()
    codes = sorted(c for c, always in counties.items() if always or not current_only)
    area = draw(st.sampled_from(codes))
    born = draw(st.dates(*born))
    seq = draw(st.integers(0, 999))
    return with_check(f"{area}{born:%Y%m%d}{seq:03d}")


ID_MUTATIONS = ("digit", "char", "drop", "insert", "check", "province", "birth", "lower", "zeros")


def recheck(first17: str, last: str) -> str:
    """`first17` with its right check character when it is 17 digits, else with `last`."""
    return with_check(first17) if len(first17) == 17 and first17.isdigit() else first17 + last


@st.composite
def id_candidates(draw: st.DrawFn) -> str:
    """Valid ids and ids with one or two defects of every kind, as a department sends them."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text("0123456789X", min_size=16, max_size=19))
    value = draw(valid_ids(born=(date(1880, 1, 1), date(2030, 12, 31))))
    for kind in draw(st.lists(st.sampled_from(ID_MUTATIONS), max_size=3)):
        at = draw(st.integers(0, 17)) % len(value)
        if kind == "digit":  # a typing error, check character not recomputed
            value = value[:at] + draw(st.sampled_from("0123456789")) + value[at + 1 :]
        elif kind == "char":
            junk = draw(st.sampled_from(list(" -.XOIZSVABx/")))
            value = value[:at] + junk + value[at + 1 :]
        elif kind == "drop":
            value = value[:at] + value[at + 1 :]
        elif kind == "insert":
            value = value[:at] + draw(st.sampled_from("0123456789X")) + value[at:]
        elif kind == "check":
            value = value[:17] + draw(st.sampled_from(ID_CHECK_CHARS))
        elif kind == "province":
            value = recheck(f"{draw(st.integers(0, 99)):02d}" + value[2:17], value[17:])
        elif kind == "birth":
            births = st.tuples(st.integers(1850, 2100), st.integers(0, 13), st.integers(0, 32))
            y, m, d = draw(births)
            value = recheck(f"{value[:6]}{y:04d}{m:02d}{d:02d}{value[14:17]}", value[17:])
        elif kind == "lower":
            value = value.lower()
        elif kind == "zeros":  # an 18-digit number through an Excel cell: 15 significant digits
            value = value[:15] + "000"
    return value.strip()  # the normaliser trims before it checks (tasks/normalise.clean_text)


# Lengths the normaliser turns into an 18-character id before checking (the spec's forms).
UPGRADED = (15, 20)


@PROPERTY
@given(st.lists(id_candidates(), min_size=10, max_size=40))
def test_id_verdict_is_stdnums_with_the_documented_differences(values: list[str]) -> None:
    values = [v for v in values if len(v) not in UPGRADED]
    _, defects = normalise_id18(pd.Series(values, dtype="string"), D)
    ours = defects.isna().tolist()
    provinces = province_codes()
    for value, accepted in zip(values, ours, strict=True):
        canonical = value.upper()
        verdict = stdnum_ric(canonical)
        if verdict == "valid":
            expected = in_range(canonical)
        elif verdict == "place":  # the county is not checked, the province is
            expected = canonical[:2] in provinces and in_range(canonical)
        else:
            expected = False
        assert accepted == expected, (value, verdict)


@PROPERTY
@given(st.lists(id_candidates(), min_size=10, max_size=40))
def test_id_defect_names_the_part_that_is_wrong(values: list[str]) -> None:
    values = [v for v in values if len(v) not in UPGRADED]
    _, defects = normalise_id18(pd.Series(values, dtype="string"), D)
    provinces = province_codes()
    for value, found in zip(values, as_list(defects), strict=True):
        canonical = value.upper()
        verdict = stdnum_ric(canonical)
        if verdict == "length":
            shape_ok = set(canonical) <= set("0123456789X")
            assert found == ("id_length" if shape_ok else "id_chars"), value
        elif verdict == "format":
            assert found == "id_chars", value
        elif verdict == "date":
            assert found in ("id_region", "id_birth_date"), value
            assert (found == "id_region") == (canonical[:2] not in provinces), value
        elif verdict == "checksum" and canonical[17] not in ID_CHECK_CHARS:
            assert found == "id_chars", value  # stdnum: wrong check; here: not a check character
        elif verdict in ("checksum", "place", "valid"):
            # stdnum names the check character first; the project names the province, then
            # the birth date, then the check character (an Excel-zeroed end: id_excel_float).
            checksum = verdict == "checksum"
            birth_ok = verdict != "checksum" or _birth_ok(canonical)
            expected = (
                "id_excel_float"
                if checksum and canonical.endswith("000")
                else "id_region"
                if canonical[:2] not in provinces
                else "id_birth_date"
                if not birth_ok or not in_range(canonical)
                else "id_checksum"
                if checksum
                else None
            )
            assert found == expected, (value, verdict)


def as_list(defects: pd.Series) -> list[str | None]:
    return [None if pd.isna(d) else str(d) for d in defects]


def _birth_ok(value: str) -> bool:
    try:
        ric.get_birth_date(value)
    except InvalidComponent:
        return False
    return True


@PROPERTY
@given(st.lists(valid_ids(current_only=True), min_size=1, max_size=40))
def test_fifteen_digit_upgrade_is_what_stdnum_validates(values: list[str]) -> None:
    old = [v[:6] + v[8:17] for v in values if v[6:8] == "19"]
    upgraded = upgrade_id15(pd.Series(old, dtype="string")).tolist()
    assert upgraded == [v for v in values if v[6:8] == "19"]
    assert all(ric.is_valid(u) for u in upgraded)
    normalised, defects = normalise_id18(pd.Series(old + [v + "01" for v in values]), D)
    assert normalised.tolist() == upgraded + values
    assert defects.isna().all()


@PROPERTY
@given(st.lists(id_candidates(), min_size=10, max_size=40))
def test_gx_check_and_normaliser_agree(values: list[str]) -> None:
    canonical = [v.upper() for v in values if len(v) == 18]
    ids = pd.Series(canonical, dtype="string")
    _, defects = normalise_id18(ids, D)
    assert id18_valid(ids, D).tolist() == defects.isna().tolist()


def test_provinces_are_stdnums_and_the_residence_permit_code() -> None:
    _, theirs = stdnum_places()
    assert province_codes() - theirs == {"83"}
    assert theirs <= province_codes()


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("016475199001011236", "id_region"),  # the examples, any check character
        ("977929199001011232", "id_region"),
        (with_check("01647519900101123"), "id_region"),
        (with_check("97792919900101123"), "id_region"),
        (with_check("00000019900101123"), "id_region"),
        ("6103 2719900101123", "id_chars"),
        ("61032719900101123O", "id_chars"),
        ("610327199X0101123X", "id_chars"),  # X only as the check character
        ("61032719900101123", "id_length"),
        ("6103271990010112345", "id_length"),
        ("61032719900101123X1", "id_length"),
        ("身份证号码不详", "id_chars"),
        (with_check("61032719900230123"), "id_birth_date"),
        (with_check("83000019900101123")[:17] + "Y", "id_chars"),
    ],
)
def test_id_defects(raw: str, rule: str) -> None:
    assert normalise_id18(pd.Series([raw], dtype="string"), D)[1].tolist() == [rule]


@pytest.mark.parametrize(
    "raw",
    [
        with_check("83000019900101123"),  # Taiwan residents' residence permit
        with_check("81000019900101123"),
        with_check("61039919900101123"),  # a county code stdnum does not know: province ok
        with_check("14022119500101123"),  # a 1993 county code, born 1950: issued later
    ],
)
def test_ids_accepted_beyond_stdnum(raw: str) -> None:
    assert normalise_id18(pd.Series([raw], dtype="string"), D)[1].isna().all()
    assert id18_valid(pd.Series([raw]), D).all()


def test_ids_from_numbers_and_check_char_agree_with_stdnum() -> None:
    first17 = [61032719900101123, 11010519491231002, 45102119560321000]
    made = ids_from_numbers(first17).tolist()
    assert made == [with_check(str(n)) for n in first17]
    assert id18_check_char(pd.Series([str(n) for n in first17])).tolist() == [m[17] for m in made]
    assert id18_check_char(pd.Series(["6103271990010112", None, "6103271990010112A"])).isna().all()


# --- GB 32100 credit codes ----------------------------------------------------------------------


@st.composite
def valid_credit_codes(draw: st.DrawFn, *, letters_first: bool = False) -> str:
    first = st.sampled_from(CC_ALPHABET if letters_first else "0123456789")
    head = draw(first) + draw(first)
    region = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=6, max_size=6)))
    org = "".join(draw(st.lists(st.sampled_from(CC_ALPHABET), min_size=9, max_size=9)))
    body = head + region + org
    return body + uscc.calc_check_digit(body)


CC_MUTATIONS = ("char", "drop", "insert", "check", "region", "lower")


@st.composite
def credit_candidates(draw: st.DrawFn) -> str:
    """Valid codes and codes with one or two defects of every kind."""
    value = draw(valid_credit_codes(letters_first=draw(st.booleans())))
    for kind in draw(st.lists(st.sampled_from(CC_MUTATIONS), max_size=3)):
        at = draw(st.integers(0, 17)) % len(value)
        if kind == "char":
            junk = draw(st.sampled_from(list(" -IOZSV.#") + list(CC_ALPHABET)))
            value = value[:at] + junk + value[at + 1 :]
        elif kind == "drop":
            value = value[:at] + value[at + 1 :]
        elif kind == "insert":
            value = value[:at] + draw(st.sampled_from(CC_ALPHABET + " ")) + value[at:]
        elif kind == "check":
            value = value[:17] + draw(st.sampled_from(CC_ALPHABET))
        elif kind == "region":
            body = value[:2] + draw(st.sampled_from(CC_ALPHABET[10:])) + value[3:17]
            alphabet_only = len(body) == 17 and set(body) <= set(CC_ALPHABET)
            value = body + (uscc.calc_check_digit(body) if alphabet_only else value[17:])
        elif kind == "lower":
            value = value.lower()
    return value


def stdnum_uscc(value: str) -> str:
    try:
        uscc.validate(value)
    except InvalidLength:
        return "length"
    except InvalidFormat:
        return "format"
    except InvalidChecksum:
        return "checksum"
    return "valid"


@PROPERTY
@given(st.lists(credit_candidates(), min_size=10, max_size=40))
def test_credit_code_verdict_is_stdnums_with_the_documented_differences(
    values: list[str],
) -> None:
    ours = credit_code_valid(pd.Series(values, dtype="string")).tolist()
    for value, accepted in zip(values, ours, strict=True):
        if value != uscc.compact(value):  # spaces, hyphens, lower case: stdnum cleans them
            expected = False
        elif not value[:2].isdigit():  # stdnum wants digits in positions 1-2; as if they were
            body = "00" + value[2:17]
            expected = (
                len(value) == 18
                and set(value) <= set(CC_ALPHABET)
                and stdnum_uscc(body + uscc.calc_check_digit(body)) == "valid"
                and value[17] == uscc.calc_check_digit(value[:17])
            )
        else:
            expected = stdnum_uscc(value) == "valid"
        assert accepted == expected, value


@PROPERTY
@given(st.lists(credit_candidates(), min_size=10, max_size=40))
def test_credit_code_defect_names_the_part_that_is_wrong(values: list[str]) -> None:
    found = as_list(credit_code_defects(pd.Series(values, dtype="string")))
    for value, defect in zip(values, found, strict=True):
        alphabet_only = set(value) <= set(CC_ALPHABET)
        verdict = stdnum_uscc(value) if value == uscc.compact(value) else "cleaned"
        if not alphabet_only:
            assert defect == "credit_code_chars", value
        elif verdict == "length":
            assert defect == "credit_code_length", value
        elif not value[2:8].isdigit():
            assert defect == "credit_code_region", value
        elif value[17] != uscc.calc_check_digit(value[:17]):
            assert verdict in ("checksum", "format") and defect == "credit_code", value
        else:
            assert verdict in ("valid", "format") and defect is None, value


def test_credit_code_check_char_is_stdnums() -> None:
    bodies = ["91350100M000100Y4", "N2610327MA6X00001", "11610327000000001"]
    assert credit_code_check_char(bodies) == [uscc.calc_check_digit(b) for b in bodies]


# --- what a department reads ------------------------------------------------------------------


def test_every_defect_has_its_own_message() -> None:
    assert len(set(IDENTITY_RULE_TEXT.values())) == len(IDENTITY_RULE_TEXT)
    ids = normalise_id18(
        pd.Series(["6103271990010112", "6103271990010112AB", "6.10327E+17", "016475199001011236"]),
        D,
    )[1]
    codes = credit_code_defects(
        pd.Series(
            ["91350100M00010", "9135 0100M000100Y4", "91A50100M000100Y43", "91350100M000100Y44"]
        )
    )
    assert set(ids) | set(codes) <= set(IDENTITY_RULE_TEXT)


def vid(first17: str) -> str:
    return with_check(first17)


JIUYE = dict(
    name="张三华",
    id_number=vid("61032719900101123"),
    employment_status="县内务工",
    employer="陇县宏兴建筑工程有限公司",
    employer_credit_code="91350100M000100Y43",
    start_date="2024-03-01",
    monthly_income="3000",
)


def test_rejects_name_each_defect_in_chinese_with_the_value_masked() -> None:
    ids = [
        "6103 2719900101123",
        "61032719900101123",
        vid("01647519900101123"),
        vid("61032719900231123"),
        vid("61032719900101124")[:17] + ("0" if vid("61032719900101124")[17] != "0" else "1"),
    ]
    codes = ["9135 0100M000100Y4", "91350100M000100Y", "91A50100M000100Y43", "91350100M000100Y44"]
    rows = [JIUYE | {"id_number": v} for v in ids]
    rows += [
        JIUYE | {"id_number": vid(f"610327199001{10 + i}123"), "employer_credit_code": c}
        for i, c in enumerate(codes)
    ]
    frame = pd.DataFrame(rows).astype("string")
    frame["source_row"] = range(2, 2 + len(frame))
    v = validate_rows(frame, get_contract("RS_JIUYE"), COMMON, exchange_date=D, excel=False)
    rejects = v.rejects.set_index("source_row")
    assert rejects["rule"].tolist() == [
        "id_chars",
        "id_length",
        "id_region",
        "id_birth_date",
        "id_checksum",
        "credit_code_chars",
        "credit_code_length",
        "credit_code_region",
        "credit_code",
    ]
    for row, rule in rejects["rule"].items():
        message = rejects.loc[row, "message"]
        header = "身份证号" if rule.startswith("id_") else "统一社会信用代码"
        assert message.startswith(f"{header}：{IDENTITY_RULE_TEXT[rule]}"), message
    for value in ids:
        assert not rejects["message"].str.contains(value, regex=False).any()
        assert not rejects["value_masked"].str.contains(value, regex=False).any()
