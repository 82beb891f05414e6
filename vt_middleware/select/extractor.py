"""``DensityBasedExtractor``: the seed's golden-data selector over a store or arrays.

    ex = DensityBasedExtractor(dataset_manager=VectorWaveDatasetManager(), epsilon=0.3, top_k=50)
    steady = ex.select_steady_state("generate_review_summary")   # List[Candidate]
    anoms = ex.select_anomalies("generate_review_summary")
    path = ex.extract_golden_data("generate_review_summary", "./golden_data.jsonl")

Method and parameters: :mod:`.density` (graph, exact/approximate density),
:mod:`.clusters` (steady state), :mod:`.anomalies`, :mod:`.export` (ChatML).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from ..errors import DataError
from ..types import CallRecord, Candidate
from .clusters import Pick, SelectionParams
from .core import Selection, select_golden
from .density import DEFAULT_APPROX_THRESHOLD, DEFAULT_GRAPH_K, DEFAULT_SAMPLE_SIZE, Method, check_epsilon
from .export import ExportReport, corrections_by_run, write_chat_jsonl
from .sources import DEFAULT_PAGE_SIZE, CallMatrix, open_source

logger = logging.getLogger("vt_middleware.select")


@dataclass
class Analysis:
    """One function's calls, the selection over them and the feedback corrections."""

    function_name: str
    calls: CallMatrix
    selection: Selection
    corrections: Dict[str, str]
    key: str


class NoCallsError(DataError):
    """The function has no logged calls (selections are empty; export has nothing to write)."""


class DensityBasedExtractor:
    """Golden data from one function's logged calls (seed-compatible).

    ``dataset_manager``: a ``vectorwave.VectorWaveDatasetManager`` (read through its
    ``.store``), vt_middleware's ``ExecutionStore``, an (n, d) array / ``ArraySource``,
    or None for the configured store. ``epsilon``: neighbours have cosine similarity
    >= 1 - epsilon, in (0, 2). ``top_k``: picks per strategy. The remaining keywords are
    :class:`~.clusters.SelectionParams` and the density options of :mod:`.density`.
    """

    def __init__(
        self,
        dataset_manager: Any = None,
        epsilon: float = 0.3,
        top_k: int = 50,
        *,
        min_pts: int = 3,
        min_cluster_size: Optional[int] = None,
        dedup_threshold: float = 0.95,
        min_group_size: int = 2,
        per_group: int = 1,
        method: Method = "auto",
        approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
        k: int = DEFAULT_GRAPH_K,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        page_size: int = DEFAULT_PAGE_SIZE,
        random_state: int = 0,
    ) -> None:
        self.dataset_manager = dataset_manager
        self.epsilon = check_epsilon(epsilon)
        self.top_k = top_k
        self.params = SelectionParams(
            top_k=top_k,
            min_pts=min_pts,
            min_cluster_size=min_cluster_size,
            dedup_threshold=dedup_threshold,
            min_group_size=min_group_size,
            per_group=per_group,
        )
        self.method = method
        self.density_options = dict(
            k=k, approx_threshold=approx_threshold, sample_size=sample_size, random_state=random_state
        )
        self.source = open_source(dataset_manager, page_size)
        self.last_export: Optional[ExportReport] = None
        self._cache: Dict[str, Analysis] = {}

    # -- analysis -------------------------------------------------------------------------
    def analyze(self, function_name: str) -> Analysis:
        """Load the function's calls and select (reused while calls and feedback are unchanged)."""
        if not function_name:
            raise DataError("function_name is empty")
        calls = self.source.load(function_name)
        if len(calls) == 0:
            raise NoCallsError(f"no logged calls of {function_name!r} to select golden data from")
        corrections = corrections_by_run(self.source.feedback(function_name))
        digest = hashlib.sha256()
        for uuid, status in zip(calls.uuids, calls.statuses):
            digest.update(f"{uuid}\0{status}\n".encode())
        digest.update(repr(sorted(corrections.items())).encode("utf-8"))
        key = digest.hexdigest()
        cached = self._cache.get(function_name)
        if cached is not None and cached.key == key:
            return cached
        corrected = np.array([u in corrections for u in calls.uuids], dtype=bool)
        selection = select_golden(
            calls.vectors,
            calls.statuses,
            self.epsilon,
            self.params,
            self.method,
            excluded=corrected,
            **self.density_options,
        )
        analysis = Analysis(function_name, calls, selection, corrections, key)
        self._cache[function_name] = analysis
        return analysis

    def _candidates(self, analysis: Analysis, picks: List[Pick]) -> List[Candidate]:
        uuids = [analysis.calls.uuids[p.index] for p in picks]
        rows = self.source.fetch(uuids)
        out: List[Candidate] = []
        for pick, uuid in zip(picks, uuids):
            props = rows.get(uuid, {})
            record = CallRecord.from_properties(props) if props else None
            out.append(
                Candidate(
                    uuid=uuid,
                    density=pick.density,
                    return_value=str(props.get("return_value") or ""),
                    function_name=analysis.function_name,
                    strategy=pick.strategy,
                    cluster=pick.cluster,
                    inputs=record.inputs if record else {},
                    status=analysis.calls.statuses[pick.index],
                    run_id=record.run_id if record else uuid,
                )
            )
        return out

    # -- seed API -------------------------------------------------------------------------
    def _analysis_or_none(self, function_name: str, strategy: str) -> Optional[Analysis]:
        """The analysis, or None (logged) when the function has no logged calls: the seed's
        selections are then empty, not an error."""
        try:
            return self.analyze(function_name)
        except NoCallsError as exc:
            logger.warning("%s: the %s selection is empty", exc, strategy)
            return None

    def select_steady_state(self, function_name: str) -> List[Candidate]:
        """Medoids of the dense clusters, in proportion to cluster mass, near-duplicates dropped
        ([] when the function has no logged calls)."""
        analysis = self._analysis_or_none(function_name, "steady-state")
        return [] if analysis is None else self._candidates(analysis, analysis.selection.steady)

    def select_anomalies(self, function_name: str) -> List[Candidate]:
        """Representatives of small real groups of successful, uncorrected calls
        ([] when the function has no logged calls)."""
        analysis = self._analysis_or_none(function_name, "anomaly")
        return [] if analysis is None else self._candidates(analysis, analysis.selection.anomalies)

    def extract_golden_data(
        self,
        function_name: str,
        output_path: str = "./golden_data.jsonl",
        *,
        include_anomalies: bool = True,
        val_fraction: Optional[float] = None,
        register_as_golden: bool = False,
        model: Optional[str] = None,
    ) -> str:
        """Write the selected calls as ChatML JSONL (real inputs, real or corrected outputs);
        returns ``output_path``. ``val_fraction`` also writes ``<stem>.val.jsonl``;
        ``register_as_golden`` copies the selected calls into VectorWave's golden dataset."""
        analysis = self.analyze(function_name)
        picks = list(analysis.selection.steady)
        if include_anomalies:
            picks += analysis.selection.anomalies
        seen: set = set()
        picks = [p for p in picks if not (p.index in seen or seen.add(p.index))]
        if not picks:
            raise DataError(
                f"no calls of {function_name!r} were selected out of {len(analysis.calls)} "
                f"(none in a dense cluster or in a group of "
                f">= {self.params.min_group_size} successful calls)"
            )
        uuids = [analysis.calls.uuids[p.index] for p in picks]
        rows = self.source.fetch(uuids)
        missing = [u for u in uuids if u not in rows]
        if missing:
            logger.warning("%d selected call(s) vanished from the store before export", len(missing))
        records = [(u, CallRecord.from_properties(rows[u])) for u in uuids if u in rows]
        report = write_chat_jsonl(records, output_path, analysis.corrections, val_fraction, model)
        report.skipped.extend((u, "no longer in the store") for u in missing)
        self.last_export = report
        if register_as_golden:
            self.register_as_golden(uuids, analysis)
        return str(output_path)

    def register_as_golden(self, uuids: List[str], analysis: Optional[Analysis] = None) -> int:
        """Copy calls into VectorWave's ``VectorWaveGoldenDataset``; returns how many took."""
        manager = self.dataset_manager if hasattr(self.dataset_manager, "register_as_golden") else None
        if manager is None:
            from ..store.executions import ExecutionStore, vectorwave_dataset_manager

            own = self.dataset_manager if isinstance(self.dataset_manager, ExecutionStore) else None
            manager = vectorwave_dataset_manager(own)
        strategies: Dict[str, str] = {}
        if analysis is not None:
            for pick in analysis.selection.steady + analysis.selection.anomalies:
                strategies.setdefault(analysis.calls.uuids[pick.index], pick.strategy)
        registered = 0
        for uuid in uuids:
            strategy = strategies.get(uuid, "selected")
            if manager.register_as_golden(uuid, note=f"vt_middleware {strategy}", tags=["vt_middleware", strategy]):
                registered += 1
        return registered
