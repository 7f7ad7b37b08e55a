"""The viewer's HTML, rendered on the server: no script at all, every value escaped (`esc`)."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from factory.report.page import esc, page, pre, table
from factory.viewer.query import PAGE_SIZE, STATUSES, Filters

VERDICT_WORD = {True: ('<span class="ok">passed</span>'), False: '<span class="bad">failed</span>',
                None: '<span class="unk">could not tell</span>'}


def _status(accepted: Any) -> str:
    return '<span class="ok">accepted</span>' if accepted else '<span class="bad">rejected</span>'


def _header(m: dict[str, Any], total: int, others: list[str]) -> str:
    counts = m.get("counts") or {}
    title = f"{m.get('name')} {m.get('version')}"
    links = ['<a href="/">rows</a>']
    if any(f.get("path") == "report.html" for f in m.get("files") or []):
        links.append('<a href="/report">report</a>')
    other = (" &middot; other versions: " + ", ".join(esc(o) for o in others)) if others else ""
    acc = counts.get("accepted")
    summary = f"{total:,} rows" + (f", {acc:,} accepted" if isinstance(acc, int) else "")
    return (f"<header><h1>{esc(title)}</h1><div>{summary} &middot; teacher "
            f"{esc((m.get('teacher') or {}).get('model'))} &middot; {' &middot; '.join(links)}{other}</div></header>")


def _select(name: str, label: str, options: list[tuple[str, str]], chosen: str | None) -> str:
    opts = "".join(f'<option value="{esc(v)}"{" selected" if v == (chosen or "") else ""}>{esc(t)}</option>'
                   for v, t in options)
    return f'<label>{esc(label)}<select name="{name}">{opts}</select></label>'


def _number(name: str, label: str, value: Any, step: str) -> str:
    v = "" if value is None else esc(value)
    return f'<label>{esc(label)}<input type="number" name="{name}" value="{v}" step="{step}" size="7"></label>'


def filter_form(f: Filters, reasons: list[tuple[str, int]], verifiers: list[str]) -> str:
    return ('<form class="filters" method="get" action="/">'
            + _select("status", "status", [(s, s) for s in STATUSES], f.status)
            + _select("reason", "reject reason", [("", "any")] + [(r, f"{r} ({n:,})") for r, n in reasons], f.reason)
            + _select("verifier", "failed verifier", [("", "any")] + [(v, v) for v in verifiers], f.verifier)
            + _number("min_pass", "pass rate from", f.min_pass, "0.01")
            + _number("max_pass", "pass rate to", f.max_pass, "0.01")
            + _number("min_tokens", "tokens from", f.min_tokens, "1")
            + _number("max_tokens", "tokens to", f.max_tokens, "1")
            + '<button type="submit">filter</button> <a href="/">clear</a></form>')


def _trace_link(row: dict[str, Any], back: str, text: str | None = None) -> str:
    q = urlencode({"p": row["prompt_id"], "s": row["sample_index"], "back": back})
    return f'<a href="/trace?{esc(q)}">{esc(text if text is not None else row["prompt_id"])}</a>'


def _row_cells(r: dict[str, Any], back: str) -> list[Any]:
    return [_trace_link(r, back), esc(r["sample_index"]), _status(r["accepted"]), esc(r["reject_reason"] or ""),
            esc(r["num_tokens"]), esc(r["pass_rate"]), esc(r["extracted_answer"]), esc(r["reference"]),
            esc(r["problem"])]


ROW_HEADER = ["prompt", "sample", "status", "reject reason", "tokens", "pass rate", "extracted", "reference",
              "problem"]


def list_page(m: dict[str, Any], total: int, others: list[str], f: Filters, reasons: list[tuple[str, int]],
              verifiers: list[str], matching: int, page_no: int, rows: list[dict[str, Any]]) -> str:
    pages = max(1, math.ceil(matching / PAGE_SIZE))
    first = (page_no - 1) * PAGE_SIZE
    here = f.query(page=page_no if page_no > 1 else None)
    nav = []
    for label, target in (("first", 1), ("previous", page_no - 1), ("next", page_no + 1), ("last", pages)):
        if 1 <= target <= pages and target != page_no:
            nav.append(f'<a rel="{label}" href="/?{esc(f.query(page=target))}">{label}</a>')
        else:
            nav.append(f"<span class=muted>{label}</span>")
    shown = (f"rows {first + 1:,}-{first + len(rows):,} of {matching:,} matching" if rows
             else f"no row matches ({matching:,})")
    body = [_header(m, total, others), "<main>", filter_form(f, reasons, verifiers),
            f'<p class="pager" id="pager"><span id="shown">{shown}</span> &middot; page {page_no:,} of {pages:,} '
            f"&middot; {' '.join(nav)}</p>",
            table(ROW_HEADER, [_row_cells(r, here) for r in rows], numeric={1, 4, 5}, raw=True) if rows else "",
            "</main>"]
    return page(f"{m.get('name')} {m.get('version')}", "".join(body))


def split_answer(row: dict[str, Any]) -> str | None:
    """The answer text of the assistant turn (after </think>), as the `default` config has it."""
    messages = row.get("messages") or []
    content = messages[-1].get("content") if messages and messages[-1].get("role") == "assistant" else None
    head = f"<think>\n{(row.get('reasoning') or '').strip()}\n</think>\n\n"
    if content is not None and content.startswith(head):
        return content[len(head):]
    return content


def trace_page(m: dict[str, Any], total: int, others: list[str], row: dict[str, Any],
               samples: list[dict[str, Any]], back: str) -> str:
    verdicts = row.get("verdicts") or []
    extracted, reference = row.get("extracted_answer"), row.get("reference")
    agree = "" if extracted is None or reference is None else (
        ' <span class="ok">(same text)</span>' if str(extracted).strip() == str(reference).strip() else "")
    facts = [["status", _status(row.get("accepted"))], ["reject reason", esc(row.get("reject_reason"))],
             ["finish reason", esc(row.get("finish_reason"))], ["output tokens", esc(row.get("num_tokens"))],
             ["prompt tokens", esc(row.get("prompt_tokens"))], ["pass rate of the problem", esc(row.get("pass_rate"))],
             ["source", esc(row.get("source"))], ["engine error", esc(row.get("error"))]]
    siblings = [[("&#9656; " if s["sample_index"] == row["sample_index"] else "")
                 + _trace_link(s, back, f"sample {s['sample_index']}"),
                 _status(s["accepted"]), esc(s["reject_reason"] or ""), esc(s["num_tokens"]), esc(s["extracted_answer"])]
                for s in samples]
    back_href = "/?" + back if back else "/"
    body = [_header(m, total, others), "<main>",
            f'<p><a id="back" href="{esc(back_href)}">&larr; back to the list</a></p>',
            f'<h2 id="trace-title">{esc(row["prompt_id"])} &middot; sample {esc(row["sample_index"])}</h2>',
            '<div class="cols"><div>',
            table(["", ""], facts, raw=True),
            '<h2>Answer</h2><table id="answers"><tr><th>extracted answer</th><th>reference</th></tr>'
            f'<tr><td id="extracted">{esc(extracted)}</td><td id="reference">{esc(reference)}{agree}</td></tr></table>',
            '<h2>Verdicts</h2><table id="verdicts"><tr><th>verifier</th><th>result</th><th>reason</th></tr>'
            + "".join(f"<tr><td>{esc(v.get('name'))}</td><td>{VERDICT_WORD.get(v.get('passed'), esc(v.get('passed')))}"
                      f"</td><td>{esc(v.get('reason') or '')}</td></tr>" for v in verdicts) + "</table>",
            f'<h2>Samples of this problem ({len(samples)})</h2><div id="samples">'
            + table(["sample", "status", "reject reason", "tokens", "extracted"], siblings, numeric={3}, raw=True)
            + "</div>",
            '</div><div>',
            '<h2>Problem</h2><div id="problem">' + pre(row.get("problem")) + "</div>",
            '<h2>Reasoning</h2><div id="reasoning">' + pre(row.get("reasoning")) + "</div>",
            '<h2>Answer text</h2><div id="answer">' + pre(split_answer(row)) + "</div>",
            "<details><summary>raw completion</summary>" + pre(row.get("completion")) + "</details>",
            "<details><summary>source metadata</summary>" + pre(row.get("metadata")) + "</details>",
            "</div></div></main>"]
    return page(f"{row['prompt_id']} #{row['sample_index']}", "".join(body))


def error_page(status: int, message: str) -> str:
    return page(f"{status}", f'<main><h2>{status}</h2><p id="error">{esc(message)}</p>'
                             '<p><a href="/">back to the list</a></p></main>')
