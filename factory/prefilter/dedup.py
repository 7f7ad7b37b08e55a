"""Exact and near-duplicate detection over problem texts; the first occurrence is kept.

Exact: the same text after NFKC, lowercasing, collapsing whitespace and stripping punctuation
at the edges ("What is 2+3?" == "what is  2+3").

Near: MinHash LSH (datasketch) over shingles of tokens, then every candidate pair is confirmed
with the exact Jaccard of the two shingle sets, so the LSH only decides what gets compared and
the threshold means what it says. Two rules keep short problems honest, where Jaccard misleads:

- Numbers are tokens of their own ("2+3" -> 2, +, 3) and, with `numbers_must_match` (default),
  two prompts are near duplicates only if their multisets of numbers are equal. "What is 2+3?" and
  "What is 2+4?" share most shingles but are two problems; so are two long word problems that
  differ in one quantity. Rewordings of one problem keep its numbers and are caught.
- Operators are tokens too ("2+3" vs "2*3" differ); pure formatting ($, braces, backslashes,
  commas, full stops) is dropped so "$x^2$" and "x^2" match.

Prompts are grouped by their multiset of numbers first: a prompt alone in its group cannot have
a near duplicate and costs nothing more; a small group (<= 48) is compared pair by pair exactly;
only larger groups (e.g. every prompt without numbers) go through MinHash LSH.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from factory.prefilter.config import DedupConfig

T = TypeVar("T")
ProgressFn = Callable[[Iterable[T], int, str], Iterator[T]]

_TOKEN = re.compile(r"\d+(?:\.\d+)?|[^\W\d_]+|[^\w\s]|_")
_FORMATTING = frozenset("${}\\,.;:!?\"'`")


def _no_progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    return iter(items)


def normalize_exact(text: str) -> str:
    """The key of exact dedup: NFKC, lowercase, whitespace collapsed, edge punctuation stripped."""
    s = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    start, end = 0, len(s)
    while start < end and _is_edge_punct(s[start]):
        start += 1
    while end > start and _is_edge_punct(s[end - 1]):
        end -= 1
    return s[start:end].strip()


def _is_edge_punct(ch: str) -> bool:
    return ch == "$" or ch.isspace() or unicodedata.category(ch).startswith("P")


def exact_duplicates(texts: Sequence[str]) -> dict[int, int]:
    """{index of a duplicate: index of the first occurrence it repeats}."""
    first: dict[str, int] = {}
    dupes: dict[int, int] = {}
    for i, text in enumerate(texts):
        key = normalize_exact(text)
        j = first.setdefault(key, i)
        if j != i:
            dupes[i] = j
    return dupes


def tokenize(text: str) -> list[str]:
    """Words, numbers and operator symbols; formatting characters dropped (see module doc).

    Numbers are written canonically ("2.50" -> "2.5", "04" -> "4") so equal numbers are equal
    tokens.
    """
    norm = unicodedata.normalize("NFKC", text).lower()
    return [
        _canonical_number(t) if t[0].isdigit() else t
        for t in _TOKEN.findall(norm)
        if t not in _FORMATTING
    ]


def _canonical_number(t: str) -> str:
    whole, _, frac = t.partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    return f"{whole}.{frac}" if frac else whole


def number_key(tokens: Sequence[str]) -> tuple[str, ...]:
    """The multiset of numbers in a token list (from tokenize), as a sorted tuple."""
    return tuple(sorted(t for t in tokens if t[0].isdigit()))


def shingle_hashes(tokens: Sequence[str], k: int) -> frozenset[int]:
    """32-bit hashes of the k-token shingles; a text shorter than k is one shingle.

    Tokens hash with crc32 and a shingle with hash() of the tuple of those ints. Both are stable
    across processes (str hash() is salted per process, int and tuple-of-int hash() are not), so
    every run and every worker removes the same prompts; this is twice as fast as crc32 over the
    joined shingle text. datasketch mixes the values again before its permutations.
    """
    if not tokens:
        return frozenset()
    get = _TOKEN_IDS.get
    ids = [get(t) or _token_id(t) for t in tokens]  # a crc32 of 0 just recomputes: still right
    if len(ids) <= k:
        return frozenset([hash(tuple(ids)) & 0xFFFFFFFF])
    return frozenset(hash(g) & 0xFFFFFFFF for g in zip(*(ids[i:] for i in range(k))))


_TOKEN_IDS: dict[str, int] = {}


def _token_id(token: str) -> int:
    if len(_TOKEN_IDS) > 1_000_000:  # bound the cache on huge vocabularies
        _TOKEN_IDS.clear()
    i = _TOKEN_IDS[token] = zlib.crc32(token.encode())
    return i


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _identity(x: int) -> int:
    return x


def near_duplicates(
    texts: Sequence[str],
    cfg: DedupConfig,
    skip: set[int] | frozenset[int] = frozenset(),
    progress: ProgressFn = _no_progress,
) -> dict[int, int]:
    """{index of a near duplicate: index of the earlier kept text it matches}.

    Texts are taken in order; each is compared with the texts kept so far (never with removed
    ones, so a chain a~b~c with a !~ c keeps a and c). Indices in `skip` are ignored entirely.
    Texts with no tokens are left to exact dedup.
    """
    toks = [tokenize(t) if i not in skip else [] for i, t in enumerate(texts)]
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, t in enumerate(toks):
        if t:
            groups.setdefault(number_key(t) if cfg.numbers_must_match else (), []).append(i)
    todo = [g for g in groups.values() if len(g) >= 2]  # a prompt alone in its group is unique
    dupes: dict[int, int] = {}
    lsh_params: tuple[int, int] | None = None
    for members in progress(todo, len(todo), "near-duplicate prompts"):
        shingles = {i: shingle_hashes(toks[i], cfg.shingle) for i in members}
        if len(members) <= _PAIRWISE_MAX:
            _pairwise(members, shingles, cfg.threshold, dupes)
        else:
            lsh_params = _with_lsh(members, shingles, cfg, dupes, lsh_params)
    return dupes


# Up to this group size, comparing every pair exactly is cheaper than any MinHash.
_PAIRWISE_MAX = 48


def _pairwise(members: list[int], shingles: dict[int, frozenset[int]], threshold: float,
              dupes: dict[int, int]) -> None:
    kept: list[int] = []
    for i in members:
        match = next((j for j in kept if jaccard(shingles[j], shingles[i]) >= threshold), None)
        if match is None:
            kept.append(i)
        else:
            dupes[i] = match


def _with_lsh(members: list[int], shingles: dict[int, frozenset[int]], cfg: DedupConfig,
              dupes: dict[int, int], params: tuple[int, int] | None) -> tuple[int, int]:
    """MinHash LSH over one group; returns the LSH (bands, rows) to reuse for the next group."""
    from datasketch import MinHash, MinHashLSH  # imports scipy: only when there is work

    # The LSH only proposes candidates; a lower threshold than the real one buys recall, and the
    # exact Jaccard below restores precision. Its (bands, rows) optimisation takes ~0.1 s, so it
    # runs once per call, not once per group.
    lsh = MinHashLSH(threshold=max(0.05, cfg.threshold - 0.1), num_perm=cfg.num_perm, params=params)
    # One MinHash, cleared per text: the LSH stores band digests (bytes), not the object, and
    # building a MinHash per text cost more than hashing it.
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=_identity)
    for i in members:
        sh = shingles[i]
        m.clear()
        m.update_batch(sh)
        # Keys in the LSH are kept texts only, so a candidate is always an earlier kept text.
        match = min((j for j in lsh.query(m) if jaccard(shingles[j], sh) >= cfg.threshold), default=None)
        if match is None:
            lsh.insert(i, m, check_duplication=False)
        else:
            dupes[i] = match
    return lsh.b, lsh.r
