"""What the dashboards show, read from disk and the store; no UI code here.

Sources (all from the process config, which ``vt dashboard`` sets through ``VT_*`` env):
run records (``<state_dir>/runs/*/run.json``), evolver status (``<state_dir>/evolver.json``),
hook versions (``<hooks_dir>/vNNNN/manifest.json`` + ``ACTIVE``), golden data JSONL files
named by run records, feedback pairs, captured calls and promotions in the store.
The two writes a dashboard may do are here too: :func:`rollback` and :func:`submit_correction`.
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
    from .monitor import STAGES

    stages = run.get("stages") or {}
    order = [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]
    rows = []
    for name in order:
        entry = stages[name] or {}
        result = entry.get("result") or {}
        rows.append({
            "stage": name, "status": entry.get("status", ""), "duration_s": entry.get("duration_s"),
            "started_at": entry.get("started_at", ""), "error": entry.get("error") or "",
            "result": json.dumps(result, ensure_ascii=False, default=str) if result else "",
        })
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


def make_extractor() -> Any:
    """The selection stage's extractor over the configured store."""
    from ..extractor import DensityBasedExtractor
    from ..store.executions import get_store

    return DensityBasedExtractor(get_store(), epsilon=0.3, top_k=50)


def selection(function_name: str, extractor: Any = None) -> List[Dict[str, Any]]:
    """The selected golden candidates (steady and anomaly) with uuid, strategy and density."""
    extractor = extractor if extractor is not None else make_extractor()
    rows = []
    for strategy, candidates in (("steady", extractor.select_steady_state(function_name)),
                                 ("anomaly", extractor.select_anomalies(function_name))):
        for c in candidates or []:
            rows.append({"uuid": str(c.uuid), "strategy": getattr(c, "strategy", "") or strategy,
                         "density": float(c.density), "cluster": getattr(c, "cluster", -1),
                         "return_value": str(c.return_value or "")[:300]})
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
    return [{"x": float(x), "y": float(y), "group": strategy_of.get(c.uuid, "rest"), "uuid": c.uuid,
             "output": str(c.properties.get("return_value") or "")[:120]}
            for c, (x, y) in zip(calls, points)]


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


def hook_source(version: str) -> str:
    return hook_store().hook_path(version).read_text(encoding="utf-8")


def rules(version: str) -> List[Rule]:
    """The rules recorded in ``version``'s manifest."""
    fields = Rule.__dataclass_fields__
    return [Rule(**{k: v for k, v in raw.items() if k in fields})
            for raw in hook_store().manifest(version).get("rules", [])]


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

    return "\n".join(difflib.unified_diff(bad.splitlines(), fixed.splitlines(), "model said", "corrected to",
                                          lineterm="")) or "(no line-level difference)"


def promotions() -> List[Dict[str, Any]]:
    """Promotion and rollback rows of the store, oldest first (model + hook pairs made live)."""
    from ..store.executions import get_store

    rows = [r for r in get_store().promotions() if r.get("action") in ("promote", "rollback")]
    rows.sort(key=lambda r: int(r.get("at_ns") or 0))
    return rows


def gate_results() -> List[Dict[str, Any]]:
    """The gate decision of each run, newest first."""
    out = []
    for run in runs(limit=None):
        decision = run.get("decision") or {}
        result = run.get("result") or {}
        out.append({"run_id": run.get("run_id"), "function_name": run.get("function_name"),
                    "hook_version": result.get("hook_version"),
                    "fine_tuned_model": (result.get("train") or {}).get("fine_tuned_model"),
                    "promoted": bool(decision.get("promoted")), "reason": decision.get("reason", ""),
                    "metrics": json.dumps(decision.get("metrics") or {}, default=str)})
    return out


def rollback(reason: str = "dashboard rollback") -> Dict[str, Any]:
    """Roll back what is live: the last promotion when the store has any (hooks and routing
    together, recorded for every app instance), else the hook versions' ACTIVE pointer."""
    if promotions():
        from ..evolve.swap import Promoter

        outcome = Promoter(hooks_dir=get_config().hooks_dir).rollback(reason=reason)
        return {"via": "promotions", "active": active_hook_version(), **outcome}
    store = hook_store()
    before = store.active_version()
    after = store.rollback(reason=reason)
    return {"via": "hook versions", "rolled_back": after != before, "previous": before, "active": after}


# --- calls and feedback -------------------------------------------------------------------------
def recent_calls(function_name: Optional[str] = None, limit: int = 50) -> List[Dict[str, Any]]:
    """The newest captured calls as flat rows for a table."""
    from ..store.executions import get_store

    rows = []
    for call in get_store().recent_calls(function_name, limit=limit):
        record = CallRecord.from_properties(call.properties)
        rows.append({"run_id": call.uuid, "function_name": record.function_name, "time": record.timestamp_utc,
                     "status": record.status, "model": record.model_used or record.model_requested or "",
                     "hook_version": record.hook_version or "", "input": input_text(record.inputs)[:500],
                     "output": record.output or ""})
    return rows


def submit_correction(run_id: str, fixed_output: str, comment: Optional[str] = None) -> FeedbackPair:
    """Store a correction of captured call ``run_id`` as a feedback pair."""
    from ..capture.feedback import feedback

    return feedback(run_id, fixed_output, comment=comment or None)
