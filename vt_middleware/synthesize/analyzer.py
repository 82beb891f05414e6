"""Diff analysis of feedback pairs: edit distance, word-level segments, similarity.

Similarity is character-level by default (rule mining needs only the alignment); with an
embedder, or vectors stored with the captured calls, it is the embeddings' cosine.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..types import FeedbackPair

# Numbers with their separators (1,234.50), ISO dates and clock times are one token each, so
# a re-written value is one aligned edit.
TOKEN_RE = re.compile(r"\s+|\d+(?:[.,:/-]\d+)*(?!\w)\s*|\w+\s*|[^\w\s]\s*", re.UNICODE)
# Beyond these sizes the exact diffs would take seconds: segments fall back to
# common prefix/suffix + one middle segment, and the edit distance is capped.
MAX_DIFF_CELLS = 400_000_000
EDIT_DISTANCE_CAP = 20_000


@lru_cache(maxsize=100_000)
def tokenize(text: str) -> List[str]:
    """Words and punctuation marks with their trailing whitespace (leading whitespace alone);
    ``"".join`` restores ``text``. Cached: callers must not change the list."""
    return TOKEN_RE.findall(text)


def _check_pair(pair: FeedbackPair) -> None:
    if not isinstance(pair, FeedbackPair):
        raise DataError(f"expected a FeedbackPair, got {type(pair).__name__}")
    for name in ("input_prompt", "bad_output", "fixed_output"):
        value = getattr(pair, name)
        if not isinstance(value, str):
            raise DataError(f"FeedbackPair.{name} must be str, got {type(value).__name__}")


def plain_context(context: Any) -> Dict[str, Any]:
    """A feedback pair's context as a dict (anything else becomes ``{}``)."""
    return dict(context) if isinstance(context, dict) else {}


def word_segments(bad: str, fixed: str) -> List[Dict[str, Any]]:
    """Word-level diff of ``bad`` -> ``fixed``: equal/insert/delete/replace runs.

    Adjacent non-equal operations are merged into one segment, so "USD 20" -> "$20"
    gives one replace segment ``"USD "`` -> ``"$"``.
    """
    from rapidfuzz.distance import Indel  # LCS alignment: keeps shared words aligned

    bad_tokens, fixed_tokens = tokenize(bad), tokenize(fixed)
    bad_offsets = _offsets(bad_tokens)
    fixed_offsets = _offsets(fixed_tokens)
    merged: List[List[Any]] = []  # [tag, b0, b1, f0, f1]
    if len(bad_tokens) * len(fixed_tokens) > MAX_DIFF_CELLS:
        opcodes = _prefix_suffix_opcodes(bad_tokens, fixed_tokens)
    else:
        opcodes = Indel.opcodes(bad_tokens, fixed_tokens)
    for op in opcodes:
        tag = op.tag
        if merged and tag != "equal" and merged[-1][0] != "equal":
            merged[-1][2], merged[-1][4] = op.src_end, op.dest_end
            merged[-1][0] = "replace"
        else:
            merged.append([tag, op.src_start, op.src_end, op.dest_start, op.dest_end])
    segments = []
    for tag, b0, b1, f0, f1 in merged:
        if tag == "replace" and b0 == b1:
            tag = "insert"
        elif tag == "replace" and f0 == f1:
            tag = "delete"
        bad_text = bad[bad_offsets[b0] : bad_offsets[b1]]
        fixed_text = fixed[fixed_offsets[f0] : fixed_offsets[f1]]
        segments.append(
            {
                "op": tag,
                "bad": bad_text,
                "fixed": fixed_text,
                "text": fixed_text if tag in ("insert", "replace") else bad_text,
                "bad_span": [bad_offsets[b0], bad_offsets[b1]],
                "fixed_span": [fixed_offsets[f0], fixed_offsets[f1]],
            }
        )
    return segments


SEED_SEGMENT_TYPES = {"insert": "added", "delete": "removed", "replace": "changed"}


def seed_segments(segments: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The changed segments in the seed's shape: ``{"type": added|removed|changed, "bad", "fixed"}``."""
    return [
        {
            "type": SEED_SEGMENT_TYPES[s["op"]],
            "bad": s["bad"],
            "fixed": s["fixed"],
            "bad_span": s["bad_span"],
            "fixed_span": s["fixed_span"],
        }
        for s in segments
        if s["op"] in SEED_SEGMENT_TYPES
    ]


def diff_summary(changed: Sequence[Dict[str, Any]], limit: int = 3, width: int = 40) -> str:
    """One line describing the changes, e.g. ``2 changes: changed 'USD ' -> '$'; added '!'``."""
    if not changed:
        return "no changes"
    parts = []
    for seg in changed[:limit]:
        if seg["type"] == "added":
            parts.append(f"added {seg['fixed'][:width]!r}")
        elif seg["type"] == "removed":
            parts.append(f"removed {seg['bad'][:width]!r}")
        else:
            parts.append(f"changed {seg['bad'][:width]!r} -> {seg['fixed'][:width]!r}")
    more = f"; {len(changed) - limit} more" if len(changed) > limit else ""
    noun = "change" if len(changed) == 1 else "changes"
    return f"{len(changed)} {noun}: " + "; ".join(parts) + more


class _Op:
    def __init__(self, tag: str, src_start: int, src_end: int, dest_start: int, dest_end: int) -> None:
        self.tag, self.src_start, self.src_end = tag, src_start, src_end
        self.dest_start, self.dest_end = dest_start, dest_end


def _prefix_suffix_opcodes(bad: Sequence[str], fixed: Sequence[str]) -> List[_Op]:
    """Coarse diff for huge texts: shared head, one changed middle, shared tail."""
    head = 0
    while head < min(len(bad), len(fixed)) and bad[head] == fixed[head]:
        head += 1
    tail = 0
    while tail < min(len(bad), len(fixed)) - head and bad[-1 - tail] == fixed[-1 - tail]:
        tail += 1
    ops = [_Op("equal", 0, head, 0, head)] if head else []
    if head < len(bad) - tail or head < len(fixed) - tail:
        ops.append(_Op("replace", head, len(bad) - tail, head, len(fixed) - tail))
    if tail:
        ops.append(_Op("equal", len(bad) - tail, len(bad), len(fixed) - tail, len(fixed)))
    return ops


def _offsets(tokens: Sequence[str]) -> List[int]:
    offsets = [0]
    for token in tokens:
        offsets.append(offsets[-1] + len(token))
    return offsets


class FeedbackDiffAnalyzer:
    """Turns a :class:`FeedbackPair` into the diff record rule mining works from.

    ``similarity_score`` is semantic when ``embedder`` or ``embedding_model`` is given (vectors
    in a pair's context under ``bad_vector`` / ``fixed_vector`` are reused, the rest embedded in
    one batch), else the normalised character similarity.
    """

    def __init__(self, embedder: Optional[Any] = None, embedding_model: Optional[str] = None) -> None:
        self._embedder = embedder
        self._embedding_model = embedding_model

    @property
    def semantic(self) -> bool:
        return self._embedder is not None or self._embedding_model is not None

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from ..config import get_config
            from ..store.embedding import get_embedder

            self._embedder = get_embedder(self._embedding_model or get_config().embedding_model)
        return self._embedder

    def analyze(self, pair: FeedbackPair) -> Dict[str, Any]:
        """Diff one pair (see :meth:`analyze_many`)."""
        return self.analyze_many([pair])[0]

    def _similarities(self, pairs: Sequence[FeedbackPair]) -> List[float]:
        from rapidfuzz.distance import Levenshtein

        if not self.semantic:
            return [
                1.0
                if p.bad_output == p.fixed_output
                else float(Levenshtein.normalized_similarity(p.bad_output, p.fixed_output))
                for p in pairs
            ]
        stored: Dict[int, Any] = {}
        missing: List[str] = []
        for index, pair in enumerate(pairs):
            context = pair.context if isinstance(pair.context, dict) else {}
            bad_vec, fixed_vec = context.get("bad_vector"), context.get("fixed_vector")
            if bad_vec is not None and fixed_vec is not None:
                stored[index] = (np.asarray(bad_vec, dtype=np.float32), np.asarray(fixed_vec, dtype=np.float32))
            elif pair.bad_output != pair.fixed_output:
                missing.extend([pair.bad_output, pair.fixed_output])
        vectors = iter(self.embedder.embed(missing)) if missing else iter(())
        out = []
        for index, pair in enumerate(pairs):
            if index in stored:
                bad_vec, fixed_vec = stored[index]
                norm = float(np.linalg.norm(bad_vec) * np.linalg.norm(fixed_vec)) or 1.0
                out.append(float(bad_vec @ fixed_vec) / norm)
            elif pair.bad_output == pair.fixed_output:
                out.append(1.0)
            else:
                out.append(float(next(vectors) @ next(vectors)))
        return out

    def analyze_many(self, pairs: Sequence[FeedbackPair]) -> List[Dict[str, Any]]:
        """Diff many pairs (embedding, when semantic, in one batch)."""
        from rapidfuzz.distance import Levenshtein

        for pair in pairs:
            _check_pair(pair)
        if not pairs:
            return []
        similarities = self._similarities(pairs)
        diffs = []
        for pair, similarity in zip(pairs, similarities):
            capped = len(pair.bad_output) * len(pair.fixed_output) > MAX_DIFF_CELLS * 25
            distance = Levenshtein.distance(
                pair.bad_output, pair.fixed_output, score_cutoff=EDIT_DISTANCE_CAP if capped else None
            )
            longest = max(len(pair.bad_output), len(pair.fixed_output), 1)
            segments = word_segments(pair.bad_output, pair.fixed_output)
            changed = seed_segments(segments)
            diffs.append(
                {
                    "pair_id": pair.pair_id,
                    "run_id": pair.run_id,
                    "created_at": pair.created_at,
                    "input_prompt": pair.input_prompt,
                    "bad_output": pair.bad_output,
                    "fixed_output": pair.fixed_output,
                    "context": plain_context(pair.context),
                    "identical": pair.bad_output == pair.fixed_output,
                    "edit_distance": int(distance),
                    "edit_distance_capped": capped,
                    "normalized_edit_distance": distance / longest,
                    "similarity_score": round(similarity, 6),
                    "segments": segments,
                    "diff_segments": changed,
                    "diff_summary": diff_summary(changed),
                }
            )
        return diffs
