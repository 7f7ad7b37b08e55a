"""The shared helpers: version numbers, retry timing, scrubbing, JSONL, YAML, the LRU."""

from __future__ import annotations

import threading

import pytest

from factory.common.files import load_yaml_file, read_jsonl, sha256_bytes, sha256_file
from factory.common.lru import LockedLRU
from factory.common.retry import RetryPolicy, scrub
from factory.errors import ConfigError
from factory.store.layout import runs_dir, version_name, version_number


@pytest.mark.parametrize("name,number", [("v1", 1), ("v3", 3), ("v10", 10), ("v123456", 123456)])
def test_version_number_reads_versions(name, number):
    assert version_number(name) == number
    assert version_name(number) == name


@pytest.mark.parametrize("name", ["v", "v0", "v03", "V3", "3", "v3 ", " v3", "v3\n", "v-1", "v+1", "v1.0",
                                  ".build-v3", "v²", "v١", "v３"])
def test_version_number_rejects_everything_else(name):
    # The store's old rule used str.isdigit(), which lets "v²" through to int() (ValueError) and
    # reads "v١" as 1: the Hub's ASCII rule is the one kept.
    assert version_number(name) is None


def test_runs_dir_is_the_one_name(tmp_path):
    from factory.store.parts import RunDir

    assert runs_dir(tmp_path) == tmp_path / ".runs"
    assert RunDir.of(tmp_path, "r").path.parent == runs_dir(tmp_path)


def test_full_jitter_stays_under_the_capped_exponential():
    p = RetryPolicy(tries=5, base=1.0, cap=5.0)
    for attempt, bound in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (9, 5.0)]:
        delays = [p.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # spread over the range, not a constant


def test_equal_jitter_waits_at_least_half():
    p = RetryPolicy(base=2.0, cap=60.0, jitter="equal")
    delays = [p.delay(2) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)


def test_retry_after_wins_but_is_capped():
    p = RetryPolicy(base=1.0, cap=10.0)
    assert p.delay(0, retry_after=7.0) == 7.0
    assert p.delay(0, retry_after=300.0) == 10.0


def test_scrub_hides_secrets_bearers_and_hf_tokens():
    text = "key sk-abc123 and sk-abc123456 Authorization: Bearer xyz.789 token hf_abcdefghijkl done"
    out = scrub(text, ["sk-abc123", "sk-abc123456", None, ""])
    assert "sk-abc" not in out and "xyz.789" not in out and "abcdefghijkl" not in out
    assert out == "key *** and *** Authorization: Bearer *** token hf_*** done"


def test_sha256_file_and_bytes_agree(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_file(p) == sha256_bytes(b"abc") == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_read_jsonl_reports_bad_lines_and_keeps_going(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n\n{not json\n[1, 2]\n\xff\xfe\n{"a": 2}\n')
    lines = list(read_jsonl(p))
    assert [(ln.lineno, ln.row, ln.problem) for ln in lines] == [
        (1, {"a": 1}, None), (3, None, "invalid_json"), (4, None, "not_an_object"),
        (5, None, "not_utf8"), (6, {"a": 2}, None)]
    assert lines[1].detail


def test_load_yaml_file_says_what_is_wrong(tmp_path):
    with pytest.raises(ConfigError, match="not found; look in x/"):
        load_yaml_file(tmp_path / "nope.yaml", missing_hint="; look in x/")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_yaml_file(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml_file(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml_file(tmp_path / "empty.yaml") == {}
    (tmp_path / "ok.yaml").write_text("a: {b: 2}\n")
    assert load_yaml_file(tmp_path / "ok.yaml") == {"a": {"b": 2}}


def test_locked_lru_evicts_least_recently_used():
    c: LockedLRU[str, int] = LockedLRU(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3 and len(c) == 2
    assert c.get("missing") is None


def test_locked_lru_under_threads_keeps_its_bound():
    c: LockedLRU[int, int] = LockedLRU(100)

    def work(base: int) -> None:
        for i in range(2000):
            c.put(base + i, i)
            c.get(base + i // 2)

    threads = [threading.Thread(target=work, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(c) == 100
