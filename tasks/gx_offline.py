"""GX Data Docs that open on a network without internet (issue 14, item 5).

GX's page templates load Bootstrap, jQuery, bootstrap-table, Font Awesome and Vega from public
CDNs; none of these ships inside the great_expectations package (its `render/view/static`
holds only its own stylesheet, fonts and images, which the site copies locally). GX's template
loader puts its own templates before any custom views folder, so the references cannot be
removed at build time. After each build the pages just written are rewritten:

    every <script src="http(s)://…"> and <link href="http(s)://…"> is removed
    every <img src="http(s)://…/name.png?…"> (GX's logo, with a tracking query naming the
    project) points to static/images/name.png, which GX copies into the site
    every reference to the site's static/ folder is made relative to the page's real depth
    (GX counts it from the suite name's dots, one level short for validation pages)
    static/styles/datashare_offline.css   a small local stylesheet (layout, tables, cards)
    static/scripts/datashare_offline.js   the few jQuery calls GX's pages make, and a plain
                                          rendering of its bootstrap-table tables (the index
                                          page's list of validations is such a table)

What is lost offline: Vega charts (a note is shown in their place), table search and filter
controls, collapsing sections (they are shown open). Links to GX's website are left as links:
they are not assets, and nothing is fetched unless someone clicks one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DOCS_SITE = "local_site"  # the Data Docs site GX builds (tasks/gx_validate.py)
MARKER = "datashare-offline"
STYLESHEET = "static/styles/datashare_offline.css"
SCRIPT = "static/scripts/datashare_offline.js"

_REMOTE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>\s*", re.I | re.S
)
_REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*", re.I | re.S)
_REMOTE_IMG = re.compile(
    r"(<img\b[^>]*\bsrc\s*=\s*[\"'])(?:https?:)?//[^\"']*?([^/\"'?]+?)(?:\?[^\"']*)?([\"'])",
    re.I | re.S,
)
_LOCAL_STATIC = re.compile(r"""((?:src|href)\s*=\s*["'])(?:\./|(?:\.\./)+)static/""", re.I)
_HEAD_END = re.compile(r"</head>", re.I)

OFFLINE_CSS = """\
/* datashare: the layout GX's pages took from Bootstrap, without a network. */
body { font-family: "HKGrotesk", "Noto Sans CJK SC", "Microsoft YaHei", sans-serif;
       margin: 0; color: #212529; line-height: 1.4; }
a { color: #0056b3; }
.container-fluid { padding: 1rem 2rem; }
.row { display: flex; flex-wrap: wrap; gap: 1rem; }
.col-md-2, .col-lg-2 { flex: 0 0 15%; min-width: 12rem; }
.col-md-10, .col-lg-10 { flex: 1 1 60%; min-width: 20rem; }
.col-12 { flex: 0 0 100%; max-width: 100%; }
.navbar { display: flex; align-items: center; gap: 1rem; padding: .5rem 2rem;
          border-bottom: 1px solid #dee2e6; background: #f8f9fa; }
.navbar img { height: 2rem; }
.card { border: 1px solid #dee2e6; border-radius: .25rem; margin-bottom: 1rem; }
.card-header { background: #f1f3f5; padding: .5rem 1rem; border-bottom: 1px solid #dee2e6; }
.card-body { padding: .75rem 1rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border: 1px solid #dee2e6; padding: .3rem .5rem; text-align: left;
         vertical-align: top; }
thead th { background: #f1f3f5; }
tr.clickable-row { cursor: pointer; }
tr.clickable-row:hover { background: #e9f2ff; }
.text-success { color: #1e7e34; } .text-danger { color: #bd2130; }
.badge { display: inline-block; padding: 0 .4rem; border-radius: .25rem;
         background: #e9ecef; }
.d-none, .modal, .ge-walkthrough-modal, #ge-cta-footer, footer { display: none; }
/* Font Awesome's status icons, as characters */
.fa-check-circle::before { content: "\\2714"; }
.fa-times::before, .fa-times-circle::before { content: "\\2718"; }
.fa-exclamation-triangle::before { content: "\\26A0"; }
.fas { font-style: normal; font-weight: bold; }
.datashare-offline-note { color: #6c757d; font-style: italic; }
ul.nav { list-style: none; padding-left: 0; }
"""

OFFLINE_JS = """\
/* datashare: the jQuery calls GX's Data Docs make, without a network (tasks/gx_offline.py). */
(function () {
  function nodes(sel) {
    if (sel === document || sel === window) return [sel];
    if (sel instanceof Element) return [sel];
    if (typeof sel === "string") {
      try { return Array.prototype.slice.call(document.querySelectorAll(sel)); }
      catch (e) { return []; }
    }
    return [];
  }
  function cell(value) {
    return value === null || value === undefined ? "" : String(value);
  }
  function renderTable(table, opts) {
    var columns = (opts.columns || []).filter(function (c) { return c.visible !== false; });
    var head = "<thead><tr>" + columns.map(function (c) {
      return "<th>" + cell(c.title) + "</th>";
    }).join("") + "</tr></thead>";
    var links = opts.rowAttributes === "rowAttributesLinks";
    var body = "<tbody>" + (opts.data || []).map(function (row) {
      var attrs = links && row._table_row_link_path
        ? " class=\\"clickable-row\\" data-href=\\"" + row._table_row_link_path + "\\"" : "";
      return "<tr" + attrs + ">" + columns.map(function (c) {
        return "<td>" + cell(row[c.field]) + "</td>";
      }).join("") + "</tr>";
    }).join("") + "</tbody>";
    table.innerHTML = head + body;
    table.addEventListener("click", function (e) {
      var tr = e.target.closest("tr.clickable-row");
      if (tr && !e.target.closest("a")) window.location = tr.getAttribute("data-href");
    });
  }
  function Wrapped(list) { this.list = list; }
  Wrapped.prototype = {
    each: function (fn) { this.list.forEach(fn); return this; },
    ready: function (fn) { onReady(fn); return this; },
    on: function () { return this; },
    modal: function () { return this; },
    removeClass: function (name) {
      return this.each(function (n) { n.classList && n.classList.remove(name); });
    },
    fadeIn: function () { return this.each(function (n) { n.style.display = ""; }); },
    fadeOut: function () { return this.each(function (n) { n.style.display = "none"; }); },
    parent: function () {
      return new Wrapped(this.list.map(function (n) { return n.parentElement; })
        .filter(Boolean));
    },
    prepend: function (html) {
      return this.each(function (n) { n.insertAdjacentHTML("afterbegin", html); });
    },
    bootstrapTable: function (opts) {
      if (typeof opts !== "object") return this;
      return this.each(function (n) { renderTable(n, opts); });
    }
  };
  function onReady(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }
  window.jQuery = window.$ = function (sel) {
    if (typeof sel === "function") { onReady(sel); return new Wrapped([]); }
    return new Wrapped(nodes(sel));
  };
  window.vegaEmbed = function (el) {
    nodes(el).forEach(function (n) {
      n.innerHTML = "<p class=\\"datashare-offline-note\\">（图表需联网加载，离线时不显示）</p>";
    });
    return Promise.resolve();
  };
})();
"""


def offline_page(html: str, root: str) -> str:
    """A Data Docs page without remote scripts or stylesheets, using the local ones instead.

    `root` is the site's root relative to the page ("." or "../../.."). A page already
    rewritten comes back unchanged.
    """
    if MARKER in html:
        return html
    html = _REMOTE_SCRIPT.sub("", html)
    html = _REMOTE_LINK.sub("", html)
    html = _REMOTE_IMG.sub(lambda m: f"{m[1]}{root}/static/images/{m[2]}{m[3]}", html)
    html = _LOCAL_STATIC.sub(lambda m: f"{m[1]}{root}/static/", html)
    local = (
        f'<link rel="stylesheet" href="{root}/{STYLESHEET}" data-{MARKER}>\n'
        f'<script src="{root}/{SCRIPT}" data-{MARKER}></script>\n'
    )
    head = _HEAD_END.search(html)
    if head is None:
        return local + html
    # The shim must be defined before the pages' inline scripts call `$`: first in <head>.
    start = html.lower().find("<head>")
    at = start + len("<head>") if start >= 0 else head.start()
    return html[:at] + "\n" + local + html[at:]


def make_site_offline(site: Path, since: float | None = None) -> int:
    """Rewrite the Data Docs pages under `site` modified at or after `since` (every page if
    None) and install the local assets; returns how many pages were rewritten."""
    if not site.is_dir():
        return 0
    for name, text in ((STYLESHEET, OFFLINE_CSS), (SCRIPT, OFFLINE_JS)):
        path = site / name
        if not path.exists() or path.read_text("utf-8") != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, "utf-8")
    rewritten = 0
    for page in site.rglob("*.html"):
        if since is not None and page.stat().st_mtime < since:
            continue
        html = page.read_text("utf-8")
        root = Path(os.path.relpath(site, page.parent)).as_posix()
        new = offline_page(html, root)
        if new != html:
            page.write_text(new, "utf-8")
            rewritten += 1
    return rewritten


def docs_index_path(context_root: Path) -> Path:
    """Where the Data Docs site's index.html of the project under `context_root` is (GX keeps a
    file project in `<context_root>/gx/`); it exists once a delivery was validated with docs.
    Here, not beside the validation, so that naming the page does not import GX."""
    return Path(context_root) / "gx" / "uncommitted" / "data_docs" / DOCS_SITE / "index.html"
