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
a near duplicate and costs one comparison-free lookup; a group is compared pair by pair exactly
while it holds up to 48 kept prompts, and through MinHash LSH once it holds more (e.g. every
prompt without numbers). Texts are taken one at a time (`NearIndex`), so the prefilter streams.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from array import array
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
    """{index of a duplicate: index of the first occurrence it repeats} (ExactIndex's key)."""
    first: dict[int, int] = {}
    dupes: dict[int, int] = {}
    for i, text in enumerate(texts):
        j = first.setdefault(exact_key(text), i)
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
    index = NearIndex(cfg)
    dupes: dict[int, int] = {}
    for i in progress(range(len(texts)), len(texts), "near-duplicate prompts"):
        if i not in skip:
            match = index.add(i, texts[i])
            if match is not None:
                dupes[i] = match
    return dupes


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def exact_key(text: str) -> int:
    """What exact dedup compares: an 8-byte digest of the normalised text."""
    return _digest(normalize_exact(text))


class ExactIndex:
    """Exact dedup one text at a time: an 8-byte digest of each normalised text (~60 bytes a text
    in the set; two different texts share a digest with odds ~3e-8 at a million texts)."""

    def __init__(self) -> None:
        self.keys: set[int] = set()

    def seen(self, text: str) -> bool:
        """True when an earlier text had the same key; the text's key is remembered either way."""
        key = exact_key(text)
        if key in self.keys:
            return True
        self.keys.add(key)
        return False


class _Group:
    """The kept texts of one number key: compared pair by pair, or through an LSH once large."""

    __slots__ = ("kept", "lsh")

    def __init__(self) -> None:
        self.kept: dict[int, array] = {}  # ordinal -> its shingle hashes, 4 bytes each
        self.lsh = None


class NearIndex:
    """Near dedup one text at a time, in order (near_duplicates is this over a list).

    State per kept text with tokens: its shingle hashes as 4-byte ints (a problem of 60 tokens:
    ~240 bytes plus ~150 of containers) under an 8-byte digest of its number key; in a group that
    has outgrown pair-by-pair comparison (`_PAIRWISE_MAX` kept texts: in practice the texts
    without numbers) also its LSH band digests. This is the prefilter state that grows with the
    input; docs/cluster.md has its measured bytes per prompt.
    """

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.groups: dict[int, _Group | tuple[int, array]] = {}  # a lone text: (ordinal, shingles)
        self._lsh_params: tuple[int, int] | None = None
        self._minhash = None

    def add(self, ordinal: int, text: str) -> int | None:
        """The ordinal of the earlier kept text `text` nearly repeats; None: it is kept."""
        toks = tokenize(text)
        if not toks:
            return None
        cfg = self.cfg
        gkey = _digest("\x00".join(number_key(toks))) if cfg.numbers_must_match else 0
        sh = shingle_hashes(toks, cfg.shingle)
        group = self.groups.get(gkey)
        if group is None:  # alone so far: nothing to compare with
            self.groups[gkey] = (ordinal, array("I", sh))
            return None
        if isinstance(group, tuple):
            first = group
            group = self.groups[gkey] = _Group()
            group.kept[first[0]] = first[1]
        if group.lsh is None:
            match = next((j for j, other in group.kept.items() if jaccard(frozenset(other), sh) >= cfg.threshold),
                         None)
        else:
            cands = group.lsh.query(self._hash(sh))
            match = min((j for j in cands if jaccard(frozenset(group.kept[j]), sh) >= cfg.threshold), default=None)
        if match is not None:
            return match
        group.kept[ordinal] = array("I", sh)
        if group.lsh is not None:
            group.lsh.insert(ordinal, self._hash(sh), check_duplication=False)
        elif len(group.kept) > _PAIRWISE_MAX:
            self._to_lsh(group)
        return None

    def _hash(self, sh: Iterable[int]) -> object:
        m = self._minhash
        m.clear()  # type: ignore[union-attr]
        m.update_batch(sh)  # type: ignore[union-attr]
        return m

    def _to_lsh(self, group: _Group) -> None:
        """MinHash LSH over a group from now on; its kept texts go in first, in order."""
        from datasketch import MinHash, MinHashLSH  # imports scipy: only when there is work

        cfg = self.cfg
        # The LSH only proposes candidates; a lower threshold than the real one buys recall, and the
        # exact Jaccard restores precision. Its (bands, rows) optimisation takes ~0.1 s: done once.
        group.lsh = MinHashLSH(threshold=max(0.05, cfg.threshold - 0.1), num_perm=cfg.num_perm,
                               params=self._lsh_params)
        self._lsh_params = (group.lsh.b, group.lsh.r)
        if self._minhash is None:  # one MinHash, cleared per text: the LSH keeps band digests
            self._minhash = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=_identity)
        for j, other in group.kept.items():
            group.lsh.insert(j, self._hash(other), check_duplication=False)


# Up to this group size, comparing every pair exactly is cheaper than any MinHash.
_PAIRWISE_MAX = 48
