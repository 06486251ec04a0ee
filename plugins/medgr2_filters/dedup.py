"""``dedup``: exact and near-duplicate removal, within the batch and against D_gen.

* **Exact** duplicates share :func:`~medgr2_filters.keys.content_key` (normalised question and
  answer plus the images' file hashes): one dictionary pass, no pixels decoded.
* **Near** duplicates ask nearly the same thing about nearly the same image: their question +
  answer shingles (word 1- to ``shingle``-grams) have an estimated Jaccard similarity >=
  ``text_threshold`` (datasketch MinHash signatures), each image pair is within
  ``image_max_distance`` bits of a 64-bit perceptual hash (dHash or aHash), and their answers'
  word sets overlap (Jaccard >= ``answer_min_jaccard``). Requiring all three matters: templated
  questions repeat across thousands of different images, one image carries many different
  questions, and one long question can be asked of one image with different answers (two
  findings are two samples).

Candidates come from a banded index, never from all pairs (hand-written on purpose rather than
datasketch's ``MinHashLSH``: that indexes the text alone, so every pair of texts sharing a template
becomes a candidate whatever their images; ``benchmarks/bench_libraries.py`` at 10,000 templated
texts: 1.57 million text candidates and 1.32 s through ``MinHashLSH.query``, 0.15 s here, the same
580 verified pairs). The MinHash signature is cut into
the ``b`` bands of ``r`` rows that datasketch's ``MinHashLSH`` picks for the threshold, and the
image hash into ``image_max_distance + 1`` bit bands (by the pigeonhole principle two hashes within
that distance agree exactly on at least one band). A sample is indexed under every (text band,
image band) pair, so two samples meet only when some text band *and* some image band agree.
Keys are 64-bit integers grouped by sorting, so the cost grows as n log n, plus the pairs of texts
that share a template and whose images agree on a band by chance: about g^2 (d + 1) / 2^(64 / (d + 1))
for g samples per template and ``image_max_distance`` d, which is why d is small by default
(5: six bands of 10 bits). Pairs are checked as they are made (Hamming distance of the image
hashes), then verified (signature agreement, answer overlap) and joined with union-find.

Duplicates of D_gen count unless ``against_kept`` is false (by default: unless the run sets
``filters.allow_overlap``). Each duplicate group keeps one copy: none when the group contains a
D_gen sample, otherwise the highest-reward copy (unscored copies rank lowest; ties go to the
earlier sample).
"""

from __future__ import annotations

import functools
import hashlib
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from medgr2.data import FilterDecision, VQASample
from medgr2.interfaces import StageContext
from medgr2_filters.imagehash import HASH_BITS, ImageHasher
from medgr2_filters.keys import content_key, decide, dedup_text, image_keys, reward_or_none, shingles, words
from medgr2_filters.options import DedupOptions

SMALL_BUCKET = 32
"""Buckets up to this size are paired with vectorised offsets; bigger ones one by one."""
MAX_BUCKET = 4096
"""Buckets bigger than this are linked to their first member instead of giving all pairs."""
VERIFY_CHUNK = 100_000
"""Candidate pairs whose signatures are compared at once (bounds memory)."""

PairTest = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``accept(a, b) -> bool mask`` over index arrays of candidate pairs."""


def _key_hash(key: str) -> int:
    """A 64-bit integer standing for an image's file-level key (exact matches only)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


class _UnionFind:
    """Disjoint sets over ``range(n)`` with path compression; the smaller index is the root."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


SHINGLE_HASH: Callable[[bytes], int] | None = zlib.crc32
"""The shingle hash given to datasketch's ``MinHash`` (``None``: datasketch's default SHA-1; the
benchmark's ``--shingle-hash sha1`` sets it so)."""


def text_signatures(texts: Sequence[str], num_perm: int, shingle: int) -> np.ndarray:
    """MinHash signatures of word shingles: an ``(n, num_perm)`` uint64 array.

    datasketch's ``MinHash.bulk`` (its permutations, its minimum) with a fixed seed and CRC-32
    (``zlib.crc32``, a C builtin) as the ``hashfunc`` that turns a shingle into the 32-bit integer
    MinHash permutes, instead of datasketch's default SHA-1. ``benchmarks/bench_libraries.py``:
    20,000 templated texts in 0.88 s against 1.65 s with the default (1.9x), the same Jaccard
    estimate error (mean 0.0177 vs 0.0176 against exact Jaccard). In the whole near-duplicate filter
    (``benchmarks/bench_filters_dedup.py [--shingle-hash sha1]``, CPU seconds on a shared machine)
    the signatures are a small share: 50k samples 8.6-9.1 s with CRC-32 against 9.4 s with SHA-1,
    100k 18.0-19.6 s against 21.9 s, and both find every planted duplicate (2,500/2,500 and
    5,000/5,000).
    """
    from datasketch import MinHash

    if not texts:
        return np.zeros((0, num_perm), dtype=np.uint64)
    sets = [shingles(t, shingle) for t in texts]
    hashes = MinHash.bulk(sets, num_perm=num_perm, seed=1, hashfunc=SHINGLE_HASH)
    return np.stack([m.hashvalues for m in hashes]).astype(np.uint64)


LSH_WEIGHTS = (0.1, 0.9)
"""(false positive, false negative) weights for datasketch's band choice: favour recall, since every
candidate is verified exactly afterwards (at 128 permutations and threshold 0.7 this gives 20 bands
of 6 rows: a pair with Jaccard 0.8 is found with probability 0.998)."""


@functools.lru_cache(maxsize=32)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) that datasketch's MinHashLSH chooses for ``threshold`` and ``num_perm`` (cached:
    the choice integrates numerically and takes about a second)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
    return lsh.b, lsh.r


def _band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per (row, band) of a signature matrix: ``(n, bands)`` uint64."""
    rng = np.random.default_rng(0x5EED)
    mult = rng.integers(1, 2**63, size=(bands, rows), dtype=np.uint64) | np.uint64(1)
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    golden = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for j in range(bands):
            block = sig[:, j * rows:(j + 1) * rows]
            out[:, j] = (block * mult[j]).sum(axis=1, dtype=np.uint64) + np.uint64(j) * golden
    return out


def _image_bands(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Split 64-bit image hashes into ``max_distance + 1`` bit bands: ``(n, nb)`` uint64."""
    nb = max_distance + 1
    bits = HASH_BITS // nb
    mask = np.uint64((1 << bits) - 1)
    return np.stack([(hashes >> np.uint64(i * bits)) & mask for i in range(nb)], axis=1)


def _colliding_pairs(keys: np.ndarray, accept: PairTest) -> list[np.ndarray]:
    """Pairs of rows of ``keys`` (``(n, m)`` uint64, distinct keys within a row) that share a key and
    pass ``accept`` (applied as pairs are made, so rejected pairs never pile up in memory).

    Buckets up to :data:`MAX_BUCKET` members give all their pairs; a bigger one links its members
    to its first member only (bounding the work on degenerate data).
    """
    n = keys.shape[0]
    flat = keys.ravel()
    rows = np.repeat(np.arange(n, dtype=np.int64), keys.shape[1])
    order = np.argsort(flat, kind="stable")
    flat, rows = flat[order], rows[order]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    sizes = np.diff(np.r_[starts, flat.size])
    multi = sizes > 1
    starts, sizes = starts[multi], sizes[multi]
    pairs: list[np.ndarray] = []

    def add(a: np.ndarray, b: np.ndarray) -> None:
        ok = accept(a, b)
        if ok.any():
            pairs.append(np.stack([a[ok], b[ok]], axis=1))

    big = sizes > SMALL_BUCKET
    for start, size in zip(starts[big].tolist(), sizes[big].tolist()):
        members = rows[start:start + size]
        if size > MAX_BUCKET:
            add(np.repeat(members[0], size - 1), members[1:])
        else:
            a, b = np.triu_indices(size, k=1)
            add(members[a], members[b])
    starts, sizes = starts[~big], sizes[~big]
    if starts.size:
        # every member of the small buckets, and the end of its bucket: pair each with the next k-th
        pos = np.repeat(starts, sizes) + (np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes))
        end = np.repeat(starts + sizes, sizes)
        for k in range(1, int(sizes.max())):
            ok = pos + k < end
            add(rows[pos[ok]], rows[pos[ok] + k])
    return pairs


def _unique_pairs(pairs: list[np.ndarray]) -> np.ndarray:
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    allp = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(allp[allp[:, 0] != allp[:, 1]], axis=0)


def candidate_pairs(text_bands: np.ndarray, image_hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Pairs ``(a, b)``, ``a < b``, sharing a text band and an image band whose image hashes are
    within ``max_distance`` bits (``(p, 2)`` int64).

    One sort per image band over (sample, text band) keys salted with that image band's value.
    """
    if text_bands.shape[0] < 2:
        return np.zeros((0, 2), dtype=np.int64)

    def close(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bitwise_count(image_hashes[a] ^ image_hashes[b]) <= max_distance

    image_bands = _image_bands(image_hashes, max_distance)
    salt = np.uint64(0xD6E8FEB86659FD93)
    found: list[np.ndarray] = []
    with np.errstate(over="ignore"):
        for i in range(image_bands.shape[1]):
            keys = text_bands + (image_bands[:, [i]] + np.uint64(1 + (i << 20))) * salt
            found.append(_unique_pairs(_colliding_pairs(keys, close)))
    return _unique_pairs(found)


def _rank(reward: float | None, index: int) -> tuple[bool, float, int]:
    """Sort key of a copy in its duplicate group: scored first, higher reward, then earlier."""
    return reward is not None, reward or 0.0, -index


class DedupFilter:
    """Drops exact and near duplicates, within the batch and against D_gen (see the module docstring)."""

    name = "dedup"

    def __init__(self, options: DedupOptions):
        self.options = options
        self._hasher: ImageHasher | None = None

    def _image_hashes(self, pool: Sequence[VQASample], context: StageContext) -> list[tuple[int, ...]]:
        if self.options.image_hash == "key":
            return [tuple(_key_hash(k) for k in image_keys(s)) for s in pool]
        if self._hasher is None:
            self._hasher = ImageHasher(self.options.image_hash, context.registry)
        refs = [ref for s in pool for ref in s.images]
        assert context.reporter is not None
        with context.reporter.task("dedup: hash images", total=len(refs)) as task:
            flat = self._hasher.many(refs, task)
        out, pos = [], 0
        for s in pool:
            out.append(tuple(flat[pos:pos + len(s.images)]))
            pos += len(s.images)
        return out

    def near_pairs(self, pool: Sequence[VQASample], context: StageContext) -> list[tuple[int, int]]:
        """Verified near-duplicate pairs of indices into ``pool``."""
        opts = self.options
        if len(pool) < 2:
            return []
        sig = text_signatures([dedup_text(s) for s in pool], opts.num_perm, opts.shingle)
        img = self._image_hashes(pool, context)
        max_d = 0 if opts.image_hash == "key" else opts.image_max_distance
        first = np.array([h[0] for h in img], dtype=np.uint64)
        bands, rows = lsh_bands(opts.text_threshold, opts.num_perm)
        cand = candidate_pairs(_band_hashes(sig, bands, rows), first, max_d)
        ok = np.zeros(len(cand), dtype=bool)
        for lo in range(0, len(cand), VERIFY_CHUNK):
            a, b = cand[lo:lo + VERIFY_CHUNK, 0], cand[lo:lo + VERIFY_CHUNK, 1]
            ok[lo:lo + VERIFY_CHUNK] = (sig[a] == sig[b]).mean(axis=1) >= opts.text_threshold
        a, b = cand[ok, 0], cand[ok, 1]
        answers = [set(words(s.answer)) for s in pool]
        out = []
        for i, j in zip(a.tolist(), b.tolist()):
            hi, hj = img[i], img[j]
            same_images = len(hi) == len(hj) and all(
                (x ^ y).bit_count() <= max_d for x, y in zip(hi[1:], hj[1:], strict=True))
            union = answers[i] | answers[j]
            overlap = len(answers[i] & answers[j]) / len(union) if union else 1.0
            if same_images and overlap >= opts.answer_min_jaccard:
                out.append((i, j))
        return out

    def apply(self, samples: Sequence[VQASample], kept: Sequence[VQASample],
              context: StageContext) -> list[FilterDecision]:
        """One decision per sample: ``unique``, ``best_of_duplicates`` or why it is a duplicate."""
        opts = self.options
        against_kept = opts.against_kept
        if against_kept is None:
            against_kept = not context.allow_overlap
        old = list(kept) if against_kept else []
        pool = old + list(samples)
        n_old = len(old)
        keys = [content_key(s) for s in pool]
        groups = self.groups(pool, keys, context)
        rewards = [reward_or_none(s) for s in pool]
        out: list[FilterDecision] = []
        best_of: dict[int, int] = {}
        for i in range(n_old, len(pool)):
            s, group = pool[i], groups.get(i)
            r = rewards[i]
            if group is None:
                out.append(decide(s, self.name, True, "unique", "no duplicate found", r))
                continue
            if group[0] < n_old:
                kind = "exact" if keys[group[0]] == keys[i] else "near"
                out.append(decide(s, self.name, False, "duplicate_of_kept",
                                  f"{kind} duplicate of D_gen sample {pool[group[0]].id}", r))
                continue
            best = best_of.get(group[0])
            if best is None:
                best = best_of[group[0]] = max(group, key=lambda g: _rank(rewards[g], g))
            if best == i:
                detail = f"best of {len(group)} duplicates" + (f" (reward {r:.3f})" if r is not None else "")
                out.append(decide(s, self.name, True, "best_of_duplicates", detail, r))
                continue
            kind = "exact" if keys[best] == keys[i] else "near"
            rb = rewards[best]
            better = rb is not None and (r is None or rb > r)
            why = f", higher reward {rb:.3f}" if better else ", earlier copy"
            out.append(decide(s, self.name, False, f"{kind}_duplicate",
                              f"{kind} duplicate of {pool[best].id}{why}", r))
        return out

    def groups(self, pool: Sequence[VQASample], keys: Sequence[str],
               context: StageContext) -> dict[int, list[int]]:
        """The duplicate groups of ``pool``: index -> its group (sorted indices) for every index that
        has a duplicate; unique samples are absent (no list is made for them)."""
        first: dict[str, int] = {}
        exact: dict[int, list[int]] = {}  # first index -> its exact copies, for keys seen twice
        if self.options.mode != "near":
            for i, k in enumerate(keys):
                j = first.setdefault(k, i)
                if j != i:
                    exact.setdefault(j, [j]).append(i)
        reps = list(range(len(pool))) if self.options.mode == "near" else list(first.values())
        groups = list(exact.values())
        if self.options.mode != "exact":
            uf = _UnionFind(len(reps))
            linked: set[int] = set()
            for a, b in self.near_pairs([pool[r] for r in reps], context):
                uf.union(a, b)
                linked.update((a, b))
            merged: dict[int, list[int]] = {}
            for a in linked:
                merged.setdefault(uf.find(a), []).extend(exact.pop(reps[a], [reps[a]]))
            groups = list(exact.values()) + [sorted(g) for g in merged.values()]
        return {i: g for g in groups for i in g}
