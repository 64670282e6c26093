"""Make the corpus of files the project did not write: LibreOffice saves them.

    .venv/bin/python tests/corpus/make_corpus.py   (needs `soffice`: libreoffice-calc-nogui)

Sources are written here (CSV text, or an openpyxl workbook where sheets must be hidden or
split), then LibreOffice converts them, so the committed bytes are LibreOffice's. The hostile
files are written byte by byte. tests/corpus/README.md lists every file and how it was made;
tests/test_corpus.py asserts what becomes of each. Ids are synthetic (valid MOD 11-2 check
characters, area 610327), never real people.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECK = "10X98765432"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
HEADER = [
    "区划代码",
    "户主姓名",
    "户主身份证号",
    "成员姓名",
    "成员身份证号",
    "保障类别",
    "月保障金（元）",
    "纳入日期",
    "状态",
    "银行账号",
]
# 1-based columns LibreOffice must import as text to keep every digit
TEXT_COLUMNS = (3, 5, 10)


def id18(first17: str) -> str:
    return first17 + CHECK[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


# The member of row 4 has an id whose first 15 digits followed by 000 pass the MOD 11-2 check:
# stored as a number it would come back as another valid id (another person).
LUCKY = "610327199003028"
assert id18(LUCKY + "00") == LUCKY + "000"
HEAD = id18("61032719650304121")
ROWS = [
    [
        "610327100201",
        "王大",
        HEAD,
        "王大",
        HEAD,
        "农村低保",
        "350.5",
        "2024-01-01",
        "在保",
        "6228480402564890018",
    ],
    [
        "610327100201",
        "王大",
        HEAD,
        "李䶮",
        id18("61032719700215162"),
        "农村低保",
        "350.5",
        "2024-01-01",
        "在保",
        "",
    ],
    [
        "610327100202",
        "张堃",
        id18("61032719580911101"),
        "张堃",
        id18("61032719580911101"),
        "农村特困",
        "600",
        "2023-07-15",
        "在保",
        "6217003810026543217",
    ],
    [
        "610327100202",
        "张堃",
        id18("61032719580911101"),
        "周喆",
        id18(LUCKY + "12"),
        "农村特困",
        "600",
        "2023-07-15",
        "停保",
        "",
    ],
    # an old 15-digit number: below 2^53 a number cell holds it exactly
    [
        "610327100203",
        "赵六",
        "610327450101203",
        "赵六",
        "610327450101203",
        "农村低保",
        "420",
        "2022-11-30",
        "在保",
        "",
    ],
]
TITLE = "陇县农村低保名单（2025年3月）"
FOOTER = ["合计", "", "", "", "", "", "2321", "", "", ""]


def csv_text(rows: list[list[str]]) -> str:
    lines = [TITLE, ",".join(HEADER), *(",".join(r) for r in rows), ",".join(FOOTER)]
    return "\r\n".join(lines) + "\r\n"


def soffice(src: Path, target: str, out: Path, infilter: str | None = None) -> Path:
    """Convert `src` with LibreOffice (headless, macro-free) into `out`; the new file's path."""
    cmd = ["soffice", "--headless", "--norestore"]
    if infilter:
        cmd.append(f"--infilter={infilter}")
    cmd += ["--convert-to", target, "--outdir", str(out), str(src)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    made = out / f"{src.stem}.{target.split(':')[0]}"
    assert made.exists(), (cmd, list(out.iterdir()))
    return made


def csv_filter(text_columns: tuple[int, ...]) -> str:
    """Calc's CSV import: comma, double quote, UTF-8 (76), from line 1, column types
    (2 = text, 1 = standard: numbers and dates are recognised)."""
    types = "/".join(f"{c}/{2 if c in text_columns else 1}" for c in range(1, len(HEADER) + 1))
    return f"CSV:44,34,76,1,{types}"


def from_csv(work: Path, stem: str, text_columns: tuple[int, ...]) -> None:
    src = work / f"{stem}.csv"
    src.write_text(csv_text(ROWS), encoding="utf-8")
    for target in ("xlsx:Calc MS Excel 2007 XML", "xls:MS Excel 97", "ods:calc8"):
        made = soffice(src, target, work, csv_filter(text_columns))
        shutil.copyfile(made, HERE / made.name)


def round_trip(work: Path, stem: str, sheets: list[tuple[str, list[list[str]], bool]]) -> None:
    """Write sheets (name, rows, hidden) with openpyxl, then let LibreOffice save them."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows, hidden in sheets:
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
        if hidden:
            sheet.sheet_state = "hidden"
    src = work / "openpyxl" / f"{stem}.xlsx"
    src.parent.mkdir(exist_ok=True)
    book.save(src)
    for target in ("xlsx:Calc MS Excel 2007 XML", "ods:calc8"):
        made = soffice(src, target, work)
        shutil.copyfile(made, HERE / made.name)


def hostile() -> None:
    """Files no office program writes, byte by byte (small ones only; big ones are made by
    the tests)."""
    body = [",".join(HEADER), *(",".join(r) for r in ROWS)]
    (HERE / "cr_only.csv").write_bytes(("\r".join(body) + "\r").encode("gb18030"))
    nul = ("\r\n".join(body) + "\r\n").encode()
    at = nul.index(b"\r\n", nul.index(b"\r\n", nul.index(b"\r\n") + 2) + 2)  # end of row 3
    (HERE / "nul_bytes.csv").write_bytes(nul[:at] + b"\x00\x00" + nul[at:])
    (HERE / "deep.json").write_bytes(b"[" * 5000 + b"]" * 5000)
    (HERE / "html_named.xls").write_bytes(
        (
            "<html><body><table><tr>"
            + "".join(f"<td>{h}</td>" for h in HEADER)
            + "</tr></table></body></html>"
        ).encode()
    )
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    sheet.append(ROWS[0])
    sheet["XFD1048576"] = "x"
    book.save(HERE / "dimension_bomb.xlsx")
    # The same cell, under a <dimension> that claims A1:J2: only the isolated reader stops it.
    with (
        zipfile.ZipFile(HERE / "dimension_bomb.xlsx") as src,
        zipfile.ZipFile(HERE / "dimension_lie.xlsx", "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.startswith("xl/worksheets/"):
                data = data.replace(b'ref="A1:XFD1048576"', b'ref="A1:J2"')
            out.writestr(info, data)


def main() -> None:
    if shutil.which("soffice") is None:
        sys.exit("soffice not found: apt-get install -y libreoffice-calc-nogui")
    header = [TITLE], HEADER
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        from_csv(work, "lo_text_ids", TEXT_COLUMNS)
        from_csv(work, "lo_number_ids", ())
        data = [*header, *ROWS[:3]]
        rest = [*header, *ROWS[3:]]
        notes = [["填表说明"], ["身份证号请设为文本格式"]]
        round_trip(
            work,
            "lo_hidden_first",
            [("旧名单", [*header, *ROWS[3:]], True), ("低保名单", [*header, *ROWS], False)],
        )
        round_trip(work, "lo_split", [("第一部分", data, False), ("第二部分", rest, False)])
        round_trip(
            work, "lo_notes_sheet", [("说明", notes, False), ("名单", [*header, *ROWS], False)]
        )
    shutil.copyfile(HERE / "lo_text_ids.xls", HERE / "lo_text_ids.et")  # WPS .et with BIFF bytes
    hostile()


if __name__ == "__main__":
    main()
