"""The service functions behind the management API, the Streamlit dashboard and the CLI:
what they show, read from disk and the store, and the writes they may do. No UI or HTTP here.

Sources (all from the process config, which ``vt dashboard`` / ``vt api`` set through ``VT_*``
env): run records (``<state_dir>/runs/*/run.json``), evolver status (``<state_dir>/evolver.json``),
hook versions (``<hooks_dir>/vNNNN/manifest.json`` + ``ACTIVE``), golden data JSONL files
named by run records, feedback pairs, captured calls and promotions in the store.
Writes: feedback create/update/delete (:func:`create_feedback`, :func:`update_feedback`,
:func:`delete_feedback`, :func:`submit_correction`), :func:`rollback` (model + hooks) and
:func:`rollback_hooks`. Errors are ``VTError`` subclasses naming the bad field or id.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..config import get_config
from ..types import CallRecord, FeedbackPair, Rule, input_text

EVOLVER_FILE = "evolver.json"


# --- runs and the evolver ---------------------------------------------------------------
def runs(function_name: Optional[str] = None, limit: Optional[int] = 50) -> List[Dict[str, Any]]:
    """Run records, newest first."""
    from ..evolve.run_records import list_runs

    return list_runs(get_config().state_dir, function_name=function_name, limit=limit)


def evolver_status() -> Optional[Dict[str, Any]]:
    """The evolver's last persisted status, or None when no evolver ever ran here."""
    path = Path(get_config().state_dir) / EVOLVER_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stage_rows(run: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per stage of ``run``, in pipeline order, for a table."""
    from ..evolve.monitor import STAGES

    stages = run.get("stages") or {}
    order = [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]
    rows = []
    for name in order:
        entry = stages[name] or {}
        result = entry.get("result") or {}
        rows.append(
            {
                "stage": name,
                "status": entry.get("status", ""),
                "duration_s": entry.get("duration_s"),
                "started_at": entry.get("started_at", ""),
                "error": entry.get("error") or "",
                "result": json.dumps(result, ensure_ascii=False, default=str) if result else "",
            }
        )
    return rows


def artefacts(run: Dict[str, Any]) -> Dict[str, str]:
    """Files a run produced (golden data, hook script, run folder) that exist now."""
    result = run.get("result") or {}
    found = {}
    for key in ("golden_data_path", "hook_script_path", "run_dir"):
        value = result.get(key)
        if value and Path(value).exists():
            found[key] = str(value)
    return found


# --- golden data ---------------------------------------------------------------------------
def golden_files() -> List[str]:
    """Golden data JSONL files named by run records (newest run first, existing ones only)."""
    seen: List[str] = []
    for run in runs(limit=None):
        path = (run.get("result") or {}).get("golden_data_path")
        if path and path not in seen and Path(path).is_file():
            seen.append(path)
    return seen


def read_jsonl(path: str | Path, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                rows.append(json.loads(line))
                if limit is not None and len(rows) >= limit:
                    break
    return rows


def chat_row_view(row: Dict[str, Any]) -> Dict[str, str]:
    """``{"input", "output"}`` text of one ChatML training row."""
    messages = row.get("messages") or []
    inputs = [m for m in messages if m.get("role") != "assistant"]
    outputs = [m for m in messages if m.get("role") == "assistant"]
    return {"input": input_text({"messages": inputs}), "output": str(outputs[-1].get("content", "")) if outputs else ""}


def selection(function_name: str, extractor: Any = None) -> List[Dict[str, Any]]:
    """The selected golden candidates (steady and anomaly) with uuid, strategy and density."""
    from .runs import make_extractor

    extractor = extractor if extractor is not None else make_extractor()
    rows = []
    for strategy, candidates in (
        ("steady", extractor.select_steady_state(function_name)),
        ("anomaly", extractor.select_anomalies(function_name)),
    ):
        for c in candidates or []:
            rows.append(
                {
                    "uuid": str(c.uuid),
                    "strategy": getattr(c, "strategy", "") or strategy,
                    "density": float(c.density),
                    "cluster": getattr(c, "cluster", -1),
                    "return_value": str(c.return_value or "")[:300],
                }
            )
    return rows


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Project rows onto their first two principal components (numpy SVD)."""
    matrix = np.asarray(vectors, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) == 0:
        return np.zeros((0, 2))
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    if projected.shape[1] < 2:  # a single point (or rank 1): pad the missing axis
        projected = np.hstack([projected, np.zeros((len(projected), 2 - projected.shape[1]))])
    return projected


def embedding_map(function_name: str, selected: Sequence[Dict[str, Any]], limit: int = 5000) -> List[Dict[str, Any]]:
    """2-D points of the function's stored calls labelled steady / anomaly / rest."""
    from ..store.executions import get_store

    strategy_of = {row["uuid"]: row["strategy"] for row in selected}
    calls = []
    for page in get_store().iter_calls(function_name, include_vector=True, page_size=500):
        calls.extend(c for c in page if c.vector is not None)
        if len(calls) >= limit:
            break
    calls = calls[:limit]
    if not calls:
        return []
    points = pca_2d(np.stack([c.vector for c in calls]))
    return [
        {
            "x": float(x),
            "y": float(y),
            "group": strategy_of.get(c.uuid, "rest"),
            "uuid": c.uuid,
            "output": str(c.properties.get("return_value") or "")[:120],
        }
        for c, (x, y) in zip(calls, points, strict=True)
    ]


# --- hooks, rules, versions ----------------------------------------------------------------------
def hook_store() -> Any:
    from ..synthesize.versions import HookVersionStore

    return HookVersionStore(get_config().hooks_dir)


def hook_versions(include_broken: bool = False) -> List[Dict[str, Any]]:
    """Manifests of all hook versions, oldest first, with ``active`` set (``include_broken``:
    unreadable ones too, as ``{"version", "active", "error"}``)."""
    if not Path(get_config().hooks_dir).exists():
        return []
    return hook_store().list_versions(include_broken=include_broken)


def active_hook_version() -> Optional[str]:
    if not Path(get_config().hooks_dir).exists():
        return None
    return hook_store().active_version()


def hook_manifest(version: str) -> Dict[str, Any]:
    """``version``'s manifest; :class:`NotFoundError` when there is no such version."""
    from ..errors import HookError, NotFoundError

    try:
        return hook_store().manifest(version)
    except HookError as exc:
        raise NotFoundError(str(exc)) from None


def hook_source(version: str) -> str:
    return hook_store().hook_path(version).read_text(encoding="utf-8")


def rules(version: str) -> List[Rule]:
    """The rules recorded in ``version``'s manifest."""
    fields = Rule.__dataclass_fields__
    return [Rule(**{k: v for k, v in raw.items() if k in fields}) for raw in hook_manifest(version).get("rules", [])]


def rule_counts(rule_dicts: Sequence[Dict[str, Any]]) -> Dict[str, int]:
    """``{kind: count}`` of rules given as dicts."""
    return dict(Counter(str(r.get("kind", "?")) for r in rule_dicts))


def feedback_pairs(function_name: Optional[str] = None) -> List[FeedbackPair]:
    from ..store.executions import get_store

    return get_store().list_feedback(function_name)


def evidence(rule: Rule, pairs: Sequence[FeedbackPair]) -> List[FeedbackPair]:
    """The feedback pairs a rule was learned from (its ``sources``)."""
    sources = set(rule.sources)
    return [p for p in pairs if p.pair_id in sources]


def diff_text(bad: str, fixed: str) -> str:
    """A unified diff of a correction, line by line."""
    import difflib

    return (
        "\n".join(difflib.unified_diff(bad.splitlines(), fixed.splitlines(), "model said", "corrected to", lineterm=""))
        or "(no line-level difference)"
    )


def promotions() -> List[Dict[str, Any]]:
    """Promotion and rollback rows of the record, oldest first (model + hook pairs made live)."""
    from ..runtime.live import promotion_history

    return promotion_history()


def gate_results() -> List[Dict[str, Any]]:
    """The gate decision of each run, newest first."""
    out = []
    for run in runs(limit=None):
        decision = run.get("decision") or {}
        result = run.get("result") or {}
        out.append(
            {
                "run_id": run.get("run_id"),
                "function_name": run.get("function_name"),
                "hook_version": result.get("hook_version"),
                "fine_tuned_model": (result.get("train") or {}).get("fine_tuned_model"),
                "promoted": bool(decision.get("promoted")),
                "reason": decision.get("reason", ""),
                "metrics": json.dumps(decision.get("metrics") or {}, default=str),
            }
        )
    return out


def rollback(reason: str = "dashboard rollback", to: Optional[str] = None) -> Dict[str, Any]:
    """Roll back what is live with the one rollback (``runtime.live``): the pair before the
    promotion record's latest (hooks and model routing together), or the newest earlier pair
    serving hook version ``to``; recorded for every app instance."""
    from ..runtime.live import rollback as live_rollback

    if to is not None:
        hook_manifest(to)  # names a version that does not exist
    outcome = live_rollback(reason=reason, to=to, catch_up=True)
    return {"via": "promotion record", "active": outcome.get("hook_version"), **outcome}


# --- calls and feedback -------------------------------------------------------------------------
def recent_calls(function_name: Optional[str] = None, limit: int = 50) -> List[Dict[str, Any]]:
    """The newest captured calls as flat rows for a table."""
    from ..store.executions import get_store

    rows = []
    for call in get_store().recent_calls(function_name, limit=limit):
        row = call_row(call.uuid, call.properties)
        rows.append({**row, "input": row["input"][:500]})
    return rows


def submit_correction(run_id: str, fixed_output: str, comment: Optional[str] = None) -> FeedbackPair:
    """Store a correction of captured call ``run_id`` as a feedback pair."""
    from ..capture.feedback import feedback

    return feedback(run_id, fixed_output, comment=comment or None)


# --- feedback: create, read, update, delete ---------------------------------------------------
FEEDBACK_FIELDS = ("input_prompt", "bad_output", "fixed_output", "context", "run_id")


def _store() -> Any:
    from ..store.executions import get_store

    return get_store()


def page(items: Sequence[Any], offset: int, limit: int, total: Optional[int] = None) -> Dict[str, Any]:
    """A page of ``items`` (already cut when ``total`` is given) as ``{items, total, offset, limit}``."""
    if total is None:
        total, items = len(items), list(items)[offset : offset + limit]
    return {"items": list(items), "total": total, "offset": offset, "limit": limit}


def list_feedback_page(
    function_name: Optional[str] = None, run_id: Optional[str] = None, offset: int = 0, limit: int = 50
) -> Dict[str, Any]:
    """Feedback pairs (oldest first), optionally of one function or one captured call."""
    pairs = _store().list_feedback(function_name)
    if run_id is not None:
        pairs = [p for p in pairs if p.run_id == run_id]
    return page([p.to_dict() for p in pairs], offset, limit)


def get_feedback(pair_id: str) -> FeedbackPair:
    from ..errors import NotFoundError

    pair = _store().get_feedback(pair_id)
    if pair is None:
        raise NotFoundError(f"no feedback pair with pair_id {pair_id!r}")
    return pair


def create_feedback(
    fixed_output: str,
    *,
    run_id: Optional[str] = None,
    input_prompt: Optional[str] = None,
    bad_output: Optional[str] = None,
    context: Optional[Dict[str, Any]] = None,
    comment: Optional[str] = None,
) -> FeedbackPair:
    """Store a feedback pair. With ``run_id`` it corrects that captured call (its prompt and
    output fill what is not given); without, ``input_prompt`` and ``bad_output`` are required."""
    from ..errors import ConfigError

    if run_id is not None:
        pair = submit_correction(run_id, fixed_output, comment)
        if input_prompt is None and bad_output is None and not context:
            return pair
        changes = {k: v for k, v in (("input_prompt", input_prompt), ("bad_output", bad_output)) if v is not None}
        if context:
            changes["context"] = {**pair.context, **context}
        return update_feedback(pair.pair_id, changes)
    missing = [name for name, value in (("input_prompt", input_prompt), ("bad_output", bad_output)) if value is None]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} required when no run_id links the pair to a captured call")
    pair = FeedbackPair(
        input_prompt=str(input_prompt),
        bad_output=str(bad_output),
        fixed_output=fixed_output,
        context=dict(context or {}, **({"comment": comment} if comment else {})),
    )
    _store().add_feedback(pair)
    return get_feedback(pair.pair_id)


def update_feedback(pair_id: str, changes: Dict[str, Any]) -> FeedbackPair:
    """Change fields of a stored pair (one of ``FEEDBACK_FIELDS``); the pair is replaced atomically."""
    from ..errors import ConfigError

    unknown = sorted(set(changes) - set(FEEDBACK_FIELDS))
    if unknown:
        raise ConfigError(f"cannot update {', '.join(unknown)}: updatable fields are {', '.join(FEEDBACK_FIELDS)}")
    if "run_id" in changes and changes["run_id"] is not None and _store().get_call(changes["run_id"]) is None:
        raise ConfigError(f"run_id {changes['run_id']!r}: no captured call with this id")
    pair = get_feedback(pair_id)
    updated = FeedbackPair.from_dict({**pair.to_dict(), **changes})
    return _store().update_feedback(updated)


def delete_feedback(pair_id: str) -> None:
    from ..errors import NotFoundError

    if not _store().delete_feedback(pair_id):
        raise NotFoundError(f"no feedback pair with pair_id {pair_id!r}")


# --- calls ------------------------------------------------------------------------------------------
def call_row(uuid: str, properties: Dict[str, Any]) -> Dict[str, Any]:
    """One captured call as a flat JSON row."""
    record = CallRecord.from_properties(properties)
    return {
        "run_id": uuid,
        "function_name": record.function_name,
        "time": record.timestamp_utc,
        "status": record.status,
        "kind": record.kind,
        "model": record.model_used or record.model_requested or "",
        "hook_version": record.hook_version or "",
        "latency_ms": record.latency_ms,
        "input": input_text(record.inputs),
        "output": record.output or "",
        "error": record.error_message or "",
    }


def list_calls_page(
    function_name: Optional[str] = None, offset: int = 0, limit: int = 50, newest_first: bool = True
) -> Dict[str, Any]:
    """One page of captured calls, newest first by default (write order)."""
    store = _store()
    if not newest_first:
        total, calls = store.page_calls(function_name, offset, limit)
    else:
        total, _ = store.page_calls(function_name, 0, 0)
        start = max(total - offset - limit, 0)
        _, calls = store.page_calls(function_name, start, max(min(limit, total - offset), 0))
        calls = calls[::-1]
    return page([call_row(c.uuid, c.properties) for c in calls], offset, limit, total=total)


def get_call(run_id: str) -> Dict[str, Any]:
    """One captured call with the feedback pairs that correct it."""
    from ..errors import NotFoundError

    call = _store().get_call(run_id)
    if call is None:
        raise NotFoundError(f"no captured call with run_id {run_id!r}")
    return {
        "call": call_row(call.uuid, call.properties),
        "feedback": [p.to_dict() for p in _store().feedback_for_call(run_id)],
    }


def stats() -> Dict[str, Any]:
    """Counts across the loop: calls (by function and status), feedback, runs, hooks, promotions."""
    by_function: Counter = Counter()
    by_status: Counter = Counter()
    for page_ in _store().iter_calls(page_size=5000):
        for call in page_:
            by_function[str(call.properties.get("function_name") or "")] += 1
            by_status[str(call.properties.get("status") or "")] += 1
    all_runs = runs(limit=None)
    return {
        "calls": sum(by_function.values()),
        "calls_by_function": dict(by_function),
        "calls_by_status": dict(by_status),
        "feedback_pairs": len(_store().list_feedback()),
        "runs": len(all_runs),
        "runs_by_status": dict(Counter(str(r.get("status")) for r in all_runs)),
        "hook_versions": len(hook_versions()),
        "active_hook_version": active_hook_version(),
        "promotions": len(promotions()),
    }


# --- runs, golden data, rules and hooks by id --------------------------------------------------------
def get_run(run_id: str) -> Dict[str, Any]:
    from ..errors import DataError, NotFoundError
    from ..evolve.run_records import load_run

    if not run_id.startswith("run-") or "/" in run_id or ".." in run_id:
        raise DataError(f"run_id {run_id!r} is not a run id (like run-20250101T120000-1a2b3c)")
    try:
        return load_run(run_id, get_config().state_dir)
    except FileNotFoundError:
        raise NotFoundError(f"no run record with run_id {run_id!r}") from None


def golden_sets() -> List[Dict[str, Any]]:
    """Golden data written by runs (newest first): run id, function, path, example count."""
    out = []
    for run in runs(limit=None):
        path = (run.get("result") or {}).get("golden_data_path")
        if path and Path(path).is_file():
            with open(path, encoding="utf-8") as handle:
                count = sum(1 for line in handle if line.strip())
            out.append(
                {
                    "run_id": run.get("run_id"),
                    "function_name": run.get("function_name"),
                    "path": str(path),
                    "examples": count,
                }
            )
    return out


def golden_path(run_id: str) -> Path:
    from ..errors import NotFoundError

    path = (get_run(run_id).get("result") or {}).get("golden_data_path")
    if not path or not Path(path).is_file():
        raise NotFoundError(f"run {run_id!r} has no golden data file")
    return Path(path)


def rules_with_diffs(version: Optional[str] = None) -> Dict[str, Any]:
    """The rules of ``version`` (default: the active one), each with the corrections it was
    learned from and their word-level diff (the seed's ``diff_segments`` and ``diff_summary``)."""
    from ..errors import DataError
    from ..synthesize.analyzer import diff_summary, seed_segments, word_segments

    version = version or active_hook_version()
    if version is None:
        raise DataError("no hook version is active; name one with ?version=vNNNN")
    pairs = feedback_pairs()
    out = []
    for rule in rules(version):
        evidence_rows = []
        for pair in evidence(rule, pairs):
            changed = seed_segments(word_segments(pair.bad_output, pair.fixed_output))
            evidence_rows.append(
                {
                    **pair.to_dict(),
                    "diff_segments": changed,
                    "diff_summary": diff_summary(changed),
                    "diff": diff_text(pair.bad_output, pair.fixed_output),
                }
            )
        out.append({**rule.to_dict(), "evidence": evidence_rows})
    return {"version": version, "rules": out}


def hook_version_detail(version: str) -> Dict[str, Any]:
    return {**hook_manifest(version), "active": version == active_hook_version(), "source": hook_source(version)}


def active_hook() -> Optional[Dict[str, Any]]:
    """The active hook version's manifest and source, or None."""
    version = active_hook_version()
    return None if version is None else hook_version_detail(version)


def rollback_hooks(to: Optional[str] = None, reason: str = "api rollback") -> Dict[str, Any]:
    """:func:`rollback` reported by hook version: ``{"rolled_back", "previous", "active"}``."""
    outcome = rollback(reason=reason, to=to)
    return {
        "rolled_back": outcome["rolled_back"],
        "previous": outcome.get("replaced_hook_version"),
        "active": outcome.get("hook_version"),
    }


def cost_estimate(
    run_id: Optional[str] = None,
    token_count: Optional[int] = None,
    model: str = "gpt-4o-mini-2024-07-18",
    n_epochs: int = 3,
    max_budget_usd: Optional[float] = None,
) -> Dict[str, Any]:
    """The fine-tuning cost of a run's golden data (or of ``token_count`` tokens), with
    ``within_budget``; over budget is an answer here, not an error."""
    from dataclasses import replace

    from ..cost_guard import estimate
    from ..errors import ConfigError

    if (run_id is None) == (token_count is None):
        raise ConfigError("give exactly one of run_id or token_count")
    source: Any = golden_path(run_id) if run_id is not None else token_count
    return replace(estimate(source, model, n_epochs), max_budget_usd=max_budget_usd).to_dict()


__all__ = [
    "EVOLVER_FILE",
    "FEEDBACK_FIELDS",
    "active_hook",
    "active_hook_version",
    "artefacts",
    "call_row",
    "chat_row_view",
    "cost_estimate",
    "create_feedback",
    "delete_feedback",
    "diff_text",
    "embedding_map",
    "evidence",
    "evolver_status",
    "feedback_pairs",
    "gate_results",
    "get_call",
    "get_feedback",
    "get_run",
    "golden_files",
    "golden_path",
    "golden_sets",
    "hook_manifest",
    "hook_source",
    "hook_store",
    "hook_version_detail",
    "hook_versions",
    "list_calls_page",
    "list_feedback_page",
    "page",
    "pca_2d",
    "promotions",
    "read_jsonl",
    "recent_calls",
    "rollback",
    "rollback_hooks",
    "rule_counts",
    "rules",
    "rules_with_diffs",
    "runs",
    "selection",
    "stage_rows",
    "stats",
    "submit_correction",
    "update_feedback",
]
