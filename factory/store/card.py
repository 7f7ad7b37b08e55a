"""The dataset card (README.md): YAML front matter for the Hub and `datasets`, then what a reader
asks first: which teacher, which prompts, which checks, how many survived and why the rest did not.

Rendered from the manifest alone, so the Hub publisher can re-render it with a repo id.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

TAGS = ["synthetic", "reasoning", "chain-of-thought", "math", "factory"]
DEFAULT_LICENSE = "other"  # factory cannot know the terms of the teacher's outputs or the prompts
_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
          (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"),
          (1_000_000_000_000, "100B<n<1T")]


def size_category(n: int) -> str:
    """The Hub's size_categories label for n examples."""
    for bound, label in _SIZES:
        if n < bound:
            return label
    return "n>1T"


def license_of(manifest: dict[str, Any]) -> tuple[str, bool]:
    """(license id, whether it was set explicitly): the run's `license`, the config's
    output.license, the source's license; else "other" with a warning in the card."""
    config = manifest.get("config") or {}
    for candidate in (manifest.get("license"), (config.get("output") or {}).get("license"),
                      (manifest.get("source") or {}).get("license")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip(), True
    return DEFAULT_LICENSE, False


def front_matter(manifest: dict[str, Any]) -> dict[str, Any]:
    rows = (manifest.get("configs") or {}).get("all", {}).get("rows", 0)
    return {
        "license": license_of(manifest)[0],
        "pretty_name": manifest.get("name") or "factory dataset",
        "task_categories": ["text-generation"],
        "size_categories": [size_category(int(rows or 0))],
        "tags": list(TAGS),
        "configs": [
            {"config_name": "default", "default": True,
             "data_files": [{"split": "train", "path": "data/default/*.parquet"}]},
            {"config_name": "all",
             "data_files": [{"split": "train", "path": "data/all/*.parquet"}]},
        ],
        "dataset_info": dataset_info(manifest),
    }


def dataset_info(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Row counts and file sizes per config.

    Besides informing the Hub viewer, these make each version's cache key in `datasets` distinct:
    `datasets` keys a local folder's cache on its base name ("v1") and its card's YAML, not its
    path or contents, so without them v1 of one dataset would load another dataset's cached v1.
    """
    out = []
    for name in ("default", "all"):
        files = [f for f in manifest.get("files", []) if f.get("config") == name]
        size = sum(int(f.get("bytes") or 0) for f in files)
        rows = sum(int(f.get("rows") or 0) for f in files)
        # num_bytes is required by `datasets`' card schema: without it every load warns twice that
        # the splits YAML is malformed. Manifests written before it was recorded: the file size.
        decoded = sum(int(f.get("uncompressed_bytes") or f.get("bytes") or 0) for f in files)
        out.append({"config_name": name,
                    "splits": [{"name": "train", "num_bytes": decoded, "num_examples": rows}],
                    "download_size": size, "dataset_size": decoded})
    return out


def _cell(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        x = f"{x:.4g}"
    elif isinstance(x, (dict, list)):
        x = json.dumps(x, sort_keys=True)
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def _kv(d: dict[str, Any]) -> str:
    if not d:
        return "_not recorded_"
    return _table(["key", "value"], [[f"`{k}`", v] for k, v in d.items()])


def _fenced(text: Any, info: str = "text") -> str:
    """A fenced code block that shows `text` verbatim: the fence is longer than any run of
    backticks inside it, so no trace can close it early and turn into Markdown or HTML."""
    text = "(none)" if text is None else str(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _input_identity(source: dict[str, Any]) -> list[list[Any]]:
    """What the prompts were read from, precisely enough to read them again."""
    kind = source.get("kind")
    where = {"file": "path", "hub": "Hub dataset", "builtin": "builtin set"}.get(kind, "source")
    rows = [[where, f"`{source.get('name')}`"]]
    if kind == "hub":
        rows += [["subset", source.get("subset")], ["split", source.get("split")],
                 ["revision", source.get("revision") or "_not recorded_"]]
    if source.get("content_sha256"):
        rows.append(["content sha256", f"`{source['content_sha256']}`"])
    elif kind in ("file", "builtin"):
        rows.append(["content sha256", "_not recorded_"])
    return rows


def _cost_section(m: dict[str, Any]) -> list[str]:
    cost = m.get("cost") or {}
    if not cost:
        return []
    run = cost.get("run") or {}
    rows: list[list[Any]] = [["prompt tokens (every row of this version)", f"{cost.get('prompt_tokens', 0):,}"],
                             ["output tokens (every row of this version)", f"{cost.get('output_tokens', 0):,}"]]
    if run:
        rows += [["prompt tokens (the run that built it)", run.get("prompt_tokens")],
                 ["output tokens (the run that built it)", run.get("output_tokens")]]
    if run.get("engine_hours") is not None:
        device = run.get("device") or "device"
        rows += [[f"engine-hours ({run.get('engines')} engine(s) x {run.get('wall_s')} s wall time)",
                  run.get("engine_hours")],
                 [f"{device}-hours ({run.get('devices_per_engine')} {device}(s) per engine)", run.get("device_hours")]]
        if run.get("estimated_cost") is not None:
            rows.append([f"estimated cost ({run.get('gpu_hour_price')} per {device}-hour)", run.get("estimated_cost")])
    return ["## What it cost\n", _table(["", ""], rows) + "\n"]


def _plots_section(m: dict[str, Any]) -> list[str]:
    plots = m.get("plots") or []
    if not plots:
        return []
    out = ["## Plots\n", "The same plots, with counts, cost and example rows, are in `report.html` "
           "(one self-contained page: open it from disk).\n"]
    out += [f"![{p.get('title')}]({p.get('path')})\n" for p in plots]
    return out


def _examples_section(m: dict[str, Any]) -> list[str]:
    examples = m.get("examples") or []
    if not examples:
        return []
    out = ["## Example rows\n", "One accepted trace and one of each of the most common reject reasons "
           "(texts cut at 600 characters; config `all` has them whole).\n"]
    for ex in examples:
        head = "accepted" if ex.get("outcome") == "accepted" else f"rejected: `{ex.get('reject_reason')}`"
        out.append(f"### {head}\n")
        out.append(f"`{ex.get('prompt_id')}` sample {ex.get('sample_index')}, {ex.get('num_tokens')} tokens, "
                   f"finish `{ex.get('finish_reason')}`; extracted answer `{_cell(ex.get('extracted_answer'))}`, "
                   f"reference `{_cell(ex.get('reference'))}`.\n")
        out.append("Problem:\n\n" + _fenced(ex.get("problem")) + "\n")
        out.append("Completion:\n\n" + _fenced(ex.get("completion")) + "\n")
    return out


def _prompt_section(m: dict[str, Any]) -> list[str]:
    prompt = (m.get("config") or {}).get("prompt")
    if not prompt:
        return []
    return ["## Prompt\n", "Each problem was sent as a chat: the system prompt (if any), then the template "
            "with `{problem}` replaced by the problem text.\n",
            ("System prompt:\n\n" + _fenced(prompt["system"]) if prompt.get("system") else "System prompt: _none_")
            + "\n",
            "Template:\n\n" + _fenced(prompt.get("template")) + "\n"]


def _load_target(manifest: dict[str, Any], repo_id: str | None) -> tuple[str, str]:
    version = manifest.get("version") or "vN"
    if repo_id:
        return f'"{repo_id}"', f', revision="{version}"'
    store = ((manifest.get("config") or {}).get("output") or {}).get("store") or "factory-store"
    return f'"{store}/{manifest.get("name")}/{version}"', ""


def _body(m: dict[str, Any], repo_id: str | None) -> str:
    name, version = m.get("name"), m.get("version")
    counts = m.get("counts") or {}
    teacher, source, sampling = m.get("teacher") or {}, m.get("source") or {}, m.get("sampling") or {}
    run_stats = m.get("run_stats") or {}
    gens = int(counts.get("generations") or 0)
    out: list[str] = []

    out.append(f"# {name} ({version})\n")
    out.append(
        f"Verified chain-of-thought traces written by **{teacher.get('model', 'an unrecorded teacher')}**"
        f" for prompts from **{source.get('name', 'an unrecorded source')}**, built with "
        f"factory {m.get('factory_version', '')}. Each prompt was sampled "
        f"{sampling.get('n', '?')} times; every trace was checked by the verifiers below.\n"
    )
    out.append(
        "- `default`: accepted traces only, one row each; `messages` (user turn, then "
        "`<think>\\n...\\n</think>\\n\\nanswer`) is ready for TRL's `SFTTrainer`.\n"
        "- `all`: every generation, accepted or not, with each verifier's verdict and the reject "
        "reason. Nothing the teacher wrote was dropped silently.\n"
    )
    if not counts.get("accepted"):
        out.append("> **No trace was accepted**: config `default` is empty (and `datasets` cannot "
                   "load an empty split); the `all` config holds every generation and why it failed.\n")
    lic, explicit = license_of(m)
    if not explicit:
        out.append(
            f"> License: `{lic}`: no license was set for this run. The terms of the teacher model "
            "and of the prompt source decide how this data may be used; check both.\n"
        )

    target, rev = _load_target(m, repo_id)
    out.append("## How to load\n")
    out.append(
        "```python\nfrom datasets import load_dataset\n\n"
        f'accepted = load_dataset({target}, "default"{rev}, split="train")\n'
        f'everything = load_dataset({target}, "all"{rev}, split="train")\n```\n'
    )

    out.append("## Counts\n")
    prefiltered = run_stats.get("prefiltered") or {}
    accepted, rejected = int(counts.get("accepted") or 0), int(counts.get("rejected") or 0)
    rows = [
        ["prompts in the source (last run)", run_stats.get("prompts")],
        *[[f"prompts filtered before generation: `{r}`", n] for r, n in prefiltered.items()],
        ["prompts with generations", counts.get("prompts")],
        ["generations", gens],
        ["accepted (config `default`)", f"{accepted} ({_pct(accepted, gens)})"],
        ["rejected", f"{rejected} ({_pct(rejected, gens)})"],
        ["generations with an engine error", counts.get("errors")],
    ]
    out.append(_table(["stage", "count"], rows) + "\n")
    out += _plots_section(m)
    if m.get("parent"):
        out.append(f"Counts cover every row of this version (it extends {m['parent']}); the first "
                   "rows (source prompts, filtered prompts) are of the run that built it.\n")

    reasons = counts.get("rejected_by_reason") or {}
    out.append("### Why traces were rejected\n")
    if reasons:
        out.append(_table(["reason (`verifier:reason`)", "traces", "share of generations"],
                          [[f"`{r}`", n, _pct(n, gens)] for r, n in reasons.items()]) + "\n")
    else:
        out.append("No trace was rejected.\n")
    per_verifier = counts.get("verifiers") or {}
    if per_verifier:
        out.append("### Verdicts per verifier\n")
        out.append(_table(["verifier", "passed", "failed", "could not tell"],
                          [[f"`{v}`", c.get("passed"), c.get("failed"), c.get("unknown")]
                           for v, c in per_verifier.items()]) + "\n")
    finish = counts.get("finish_reason") or {}
    if finish:
        out.append("Finish reasons: " + ", ".join(f"`{k}` {v}" for k, v in finish.items()) + ".\n")

    pr = m.get("pass_rate") or {}
    out.append("## Pass rate per prompt\n")
    out.append(
        f"`pass_rate` = accepted samples / samples of the prompt. Mean {_cell(pr.get('mean'))}; "
        f"{pr.get('prompts_with_accepted', 0)} of {counts.get('prompts', 0)} prompts "
        f"({_pct(pr.get('prompts_with_accepted', 0), counts.get('prompts', 0) or 0)}) have at least "
        "one accepted trace.\n"
    )
    hist = pr.get("histogram") or {}
    if hist:
        out.append(_table(["pass rate", "prompts"], [[f"`{b}`", n] for b, n in hist.items()]) + "\n")

    tokens = m.get("tokens") or {}
    out.append("## Trace length (`num_tokens`)\n")
    out.append(_table(["rows", "count", "mean", "p50", "p90", "max"],
                      [[k, t.get("count"), t.get("mean"), t.get("p50"), t.get("p90"), t.get("max")]
                       for k, t in tokens.items() if k in ("accepted", "all")]) + "\n")

    out += _cost_section(m)
    out += _examples_section(m)
    out.append("## Teacher\n")
    out.append(_kv(teacher) + "\n")
    out.append("## Sampling\n")
    out.append(_kv(sampling) + "\n")
    out += _prompt_section(m)
    out.append("## Prompt source\n")
    if source:
        out.append(_table(["input", "identity"], _input_identity(source)) + "\n")
    out.append(_kv(source) + "\n")
    out.append("## Verifiers\n")
    verifiers = m.get("verifiers") or []
    if verifiers:
        out.append(_table(["verifier", "version", "parameters"],
                          [[f"`{v.get('name')}`", v.get("version"), v.get("params")]
                           for v in verifiers]) + "\n")
    else:
        out.append("_not recorded_\n")

    git = m.get("git") or {}
    out.append("## Provenance\n")
    out.append(_kv({
        "created_at": m.get("created_at"),
        "run_id": m.get("run_id"),
        "config fingerprint": m.get("fingerprint"),
        "seed": m.get("seed"),
        "factory": m.get("factory_version"),
        "git commit": (git.get("commit", "") + (" (dirty)" if git.get("dirty") else "")) or None,
        "wall time (s)": run_stats.get("wall_s"),
        "output tokens/s": run_stats.get("tokens_per_s"),
    }) + "\n")
    out.append("`manifest.json` holds the resolved config, package versions and a sha256 for every "
               "data file.\n")

    changelog = m.get("changelog") or []
    if changelog:
        out.append("## Changelog\n")
        for e in reversed(changelog):
            out.append(f"- **{e.get('version')}** ({e.get('created_at')}): {e.get('message')}")
        out.append("")
    return "\n".join(out)


def render_card(manifest: dict[str, Any], repo_id: str | None = None) -> str:
    """README.md text for a version: YAML front matter, then the body."""
    meta = yaml.safe_dump(front_matter(manifest), sort_keys=False, allow_unicode=True)
    return f"---\n{meta}---\n\n{_body(manifest, repo_id)}"
