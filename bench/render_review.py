"""Render what people read, to look at it: every HTML report at desktop and phone width and as
the A4 PDF a browser prints, and every workbook as LibreOffice prints it.

    python3 dev.py -- python bench/render_review.py REPORTS_DIR [--xlsx DIR ...] --out DIR

Screenshots are PNG (headless Debian chromium through Playwright); PDFs are rasterised page by
page with poppler's pdftoppm so they can be looked at as images. Nothing here asserts: it makes
the pictures a person then looks at (the closing note of issue 14 says what was changed after).
Needs `chromium`, `soffice` (libreoffice-calc-nogui) and `pdftoppm` (poppler-utils).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

DPI = 60
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}


def screenshots(html_files: list[Path], out: Path, pages: int = 4, dpi: int = DPI) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for html in html_files:
            for size, (width, height) in SIZES.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(html.resolve().as_uri())
                page.screenshot(path=str(out / f"{html.stem}.{size}.png"), full_page=True)
                if size == "phone":
                    wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
                    print(f"{html.name}: phone page scrolls sideways: {wide}")
                page.close()
            page = browser.new_page()
            page.goto(html.resolve().as_uri())
            pdf = out / f"{html.stem}.print.pdf"
            page.pdf(path=str(pdf), prefer_css_page_size=True)
            page.close()
            rasterise(pdf, out, pages=pages, dpi=dpi)
        browser.close()


def _name(xlsx: Path) -> str:
    """A report's own name; a published workbook as DEPT_table (every department has alerts)."""
    return xlsx.stem if xlsx.parent.name == "reports" else f"{xlsx.parent.name}_{xlsx.stem}"


def workbooks(xlsx_files: list[Path], out: Path, pages: int = 4, dpi: int = DPI) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for xlsx in xlsx_files:
            name = _name(xlsx)
            pdf_dir = Path(tmp) / "pdf"
            subprocess.run(
                [
                    "soffice",
                    f"-env:UserInstallation=file://{tmp}/profile",
                    "--headless",
                    "--convert-to",
                    "pdf",
                    "--outdir",
                    str(pdf_dir),
                    str(xlsx),
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
            pdf = out / f"{name}.xlsx.pdf"
            shutil.move(pdf_dir / f"{xlsx.stem}.pdf", pdf)
            rasterise(pdf, out, pages=pages, dpi=dpi)


def rasterise(
    pdf: Path, out: Path, prefix: str | None = None, pages: int = 4, dpi: int = DPI
) -> None:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    count = next(line.split()[-1] for line in info.stdout.splitlines() if line.startswith("Pages"))
    print(f"{pdf.name}: {count} pages")
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            str(dpi),
            "-l",
            str(pages),
            str(pdf),
            str(out / (prefix or pdf.stem)),
        ],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, help="folder of HTML reports (and their XLSX)")
    parser.add_argument(
        "--xlsx",
        type=Path,
        action="append",
        default=[],
        help="another folder whose workbooks to print (repeatable)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="print only workbooks named like this, DEPT_table or table (repeatable)",
    )
    parser.add_argument("--pages", type=int, default=4, help="pages of each PDF to rasterise")
    parser.add_argument("--dpi", type=int, default=DPI, help="resolution of the page images")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    screenshots(sorted(args.reports.glob("*.html")), args.out, args.pages, args.dpi)
    books = sorted(args.reports.glob("*.xlsx"))
    for folder in args.xlsx:
        books += sorted(folder.rglob("*.xlsx"))
    if args.only:
        books = [b for b in books if _name(b) in args.only or b.stem in args.only]
    workbooks(books, args.out, args.pages, args.dpi)


if __name__ == "__main__":
    main()
