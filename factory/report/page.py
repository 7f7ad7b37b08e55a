"""report.html: one self-contained page (plots inlined as data: URIs, styles inline, no script).

Every value from the data or the manifest goes through `esc`; the page's Content-Security-Policy
forbids every script and every fetch, so even a missed escape could not run code or call out.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

# Opened from disk there is no server to send headers: the policy rides in a meta tag.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2b36;background:#fafafa}
header{background:#264653;color:#fff;padding:12px 24px}
header a{color:#e9c46a}
main{padding:12px 24px;max-width:1200px}
h1{font-size:20px;margin:0} h2{font-size:17px;margin:22px 0 8px}
table{border-collapse:collapse;margin:6px 0;background:#fff}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef2f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #ddd;padding:8px;margin:4px 0;max-height:420px;overflow:auto}
figure{display:inline-block;margin:8px 12px 8px 0;background:#fff;border:1px solid #ddd;padding:6px}
figcaption{font-weight:600;margin-bottom:4px}
.ok{color:#1e7b6f;font-weight:600} .bad{color:#b8432b;font-weight:600} .unk{color:#8a6d00;font-weight:600}
form.filters{background:#fff;border:1px solid #ddd;padding:8px;display:flex;flex-wrap:wrap;gap:10px;align-items:end}
form.filters label{display:flex;flex-direction:column;font-size:12px}
input[type=number]{width:6em}
.cols{display:flex;gap:16px;flex-wrap:wrap} .cols>div{flex:1 1 480px;min-width:0}
.pager a,.pager span{margin-right:10px}
tr.current{background:#fff6d6}
.muted{color:#666}
"""


def esc(x: Any) -> str:
    """Text for HTML (element content and quoted attributes)."""
    if x is None:
        return "-"
    if isinstance(x, float):
        x = f"{x:.4g}"
    elif isinstance(x, (dict, list)):
        x = json.dumps(x, sort_keys=True)
    return html.escape(str(x), quote=True)


def num(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else esc(x)


def table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset(), raw: bool = False) -> str:
    """An HTML table; cells are escaped unless `raw` (then the caller built them from escaped parts)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if any(header) else ""
    body = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            text = c if raw else num(c)
            cells.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{f'<tr>{head}</tr>' if head else ''}{''.join(body)}</table>"


def pre(text: Any) -> str:
    return f"<pre>{esc(text) if text is not None else '<span class=muted>(none)</span>'}</pre>"


def page(title: str, body: str, css: str | None = None) -> str:
    """A whole document; `css` None links /style.css (the viewer), else inlines it (the report)."""
    style = f"<style>{css}</style>" if css is not None else '<link rel="stylesheet" href="/style.css">'
    meta = f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">' if css is not None else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title>{style}</head><body>{body}</body></html>")


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def cost_rows(manifest: dict[str, Any]) -> list[list[Any]]:
    cost = manifest.get("cost") or {}
    run = cost.get("run") or {}
    rows = [["prompt tokens (all rows)", cost.get("prompt_tokens")],
            ["output tokens (all rows)", cost.get("output_tokens")]]
    if run:
        rows += [["prompt tokens (last run)", run.get("prompt_tokens")],
                 ["output tokens (last run)", run.get("output_tokens")]]
    if run.get("engine_hours") is not None:
        rows += [[f"engine-hours (last run: {run.get('engines')} engine(s) x wall time)", run.get("engine_hours")],
                 [f"{run.get('device') or 'device'}-hours ({run.get('devices_per_engine')} per engine)",
                  run.get("device_hours")]]
        if run.get("estimated_cost") is not None:
            rows.append([f"estimated cost at {run.get('gpu_hour_price')} per device-hour", run.get("estimated_cost")])
    return rows


def render_report(manifest: dict[str, Any], root: Path) -> str:
    """report.html of a version: counts, cost, the plots (inlined), reject reasons, examples."""
    m = manifest
    counts = m.get("counts") or {}
    gens = int(counts.get("generations") or 0)
    teacher, source = m.get("teacher") or {}, m.get("source") or {}
    title = f"{m.get('name')} {m.get('version')}"
    out = [f"<header><h1>{esc(title)}: report</h1>"
           f"<div>teacher {esc(teacher.get('model'))} &middot; source {esc(source.get('name'))} &middot; "
           f"created {esc(m.get('created_at'))} &middot; run {esc(m.get('run_id'))}</div></header><main>"]
    accepted, rejected = int(counts.get("accepted") or 0), int(counts.get("rejected") or 0)
    out.append("<h2>Counts</h2>")
    out.append(table(["stage", "count"], [
        ["prompts", counts.get("prompts")], ["generations", gens],
        ["accepted", f"{accepted:,} ({_pct(accepted, gens)})"], ["rejected", f"{rejected:,} ({_pct(rejected, gens)})"],
        ["engine errors", counts.get("errors")]], numeric={1}))
    if not accepted:
        out.append('<p class="bad">No trace was accepted: config <code>default</code> is empty.</p>')
    out.append("<h2>What it cost</h2>")
    out.append(table(["", ""], cost_rows(m), numeric={1}))
    out.append("<h2>Plots</h2><div>")
    for p in m.get("plots") or []:
        path = root / p["path"]
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            out.append(f'<figure><figcaption>{esc(p.get("title"))}</figcaption>'
                       f'<img alt="{esc(p.get("title"))}" src="data:image/png;base64,{data}"></figure>')
    out.append("</div>")
    reasons = counts.get("rejected_by_reason") or {}
    out.append("<h2>Why traces were rejected</h2>")
    out.append(table(["verifier:reason", "traces", "share of generations"],
                     [[r, n, _pct(n, gens)] for r, n in reasons.items()], numeric={1, 2})
               if reasons else "<p>No trace was rejected.</p>")
    out.append("<h2>Example rows</h2>")
    for ex in m.get("examples") or []:
        label = "accepted" if ex.get("outcome") == "accepted" else f"rejected: {ex.get('reject_reason')}"
        out.append(f"<h3>{esc(label)} <span class=muted>({esc(ex.get('prompt_id'))} #{esc(ex.get('sample_index'))}, "
                   f"{esc(ex.get('num_tokens'))} tokens, finish {esc(ex.get('finish_reason'))})</span></h3>")
        out.append("<div class=cols><div><b>problem</b>" + pre(ex.get("problem")) + "</div>"
                   f"<div><b>extracted answer</b> {esc(ex.get('extracted_answer'))} &middot; "
                   f"<b>reference</b> {esc(ex.get('reference'))}" + pre(ex.get("completion")) + "</div></div>")
    prompt = (m.get("config") or {}).get("prompt") or {}
    out.append("<h2>Prompt</h2><b>system</b>" + pre(prompt.get("system")) + "<b>template</b>" + pre(prompt.get("template")))
    out.append("<h2>Input</h2>" + table(["key", "value"], [[k, v] for k, v in source.items()]))
    out.append("</main>")
    return page(f"{title}: report", "".join(out), css=STYLE)
