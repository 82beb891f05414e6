"""vt_middleware web dashboard (``vt dashboard`` or ``streamlit run streamlit_app.py``).

Reads the store, run records and hook versions of the config given by ``VT_*`` env
(``VT_STORE_PATH``, ``VT_HOOKS_DIR``, ``VT_STATE_DIR``). Tabs: Pipeline, Golden data,
Rules, Hook script, Versions, Feedback. Writes only on a button: rollback, correction.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import numpy as np
import pandas as pd
import streamlit as st

from vt_middleware.config import get_config
from vt_middleware.dashboards import data

TAB_NAMES = ["Pipeline", "Golden data", "Rules", "Hook script", "Versions", "Feedback"]

HOW_HOOKS_WORK = """
**How the hook works.** Every wrapped call reads the live *(hooks, model routing)* pair once.
`intercept_prompt(user_input, context)` rewrites the last user message before the model sees it
(rules with target *prompt*: added instructions or few-shot examples learned from corrections);
`intercept_output(model_output, context)` rewrites the model's answer before your code gets it
(rules with target *output*: replacements, removals, required suffixes, format fixes).
Rules run in priority order; a rule that raises is skipped (fail open) and repeated failures roll
the version back. Versions are immutable folders; `ACTIVE` names the live one and the evolver or
the *Versions* tab swaps it atomically.
"""


def _frame(rows: List[Dict[str, Any]], columns: Optional[List[str]] = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if columns:
        frame = frame.reindex(columns=columns)
    return frame


@st.cache_data(ttl=30, show_spinner="selecting golden data ...")
def _selection(function_name: str, calls: int) -> List[Dict[str, Any]]:
    """Cached per (function, number of calls): the extractor only reruns when calls arrive."""
    return data.selection(function_name)


def sidebar() -> Optional[str]:
    config = get_config()
    st.sidebar.title("vt_middleware")
    st.sidebar.caption(f"store `{config.store_path}`  \nhooks `{config.hooks_dir}`  \nstate `{config.state_dir}`")
    from vt_middleware.store.executions import get_store

    names = sorted(set(get_store().function_names()) | {r.get("function_name") for r in data.runs(limit=None)} - {None})
    if st.sidebar.button("Refresh"):
        st.cache_data.clear()
    if not names:
        st.sidebar.info("No captured calls or runs yet.")
        return None
    return st.sidebar.selectbox("Function", names, key="function")


def pipeline_tab(function_name: Optional[str]) -> None:
    st.subheader("Evolver")
    status = data.evolver_status()
    if status is None:
        st.info("No evolver status yet: start `vt.Evolver(...)` in your app or run `vt evolve`.")
    else:
        cols = st.columns(4)
        cols[0].metric("State", status.get("state", "?"))
        cols[1].metric("Runs", status.get("runs", 0))
        cols[2].metric("Promotions", status.get("promotions", 0))
        cols[3].metric("Failures", status.get("failures", 0))
        triggers = status.get("triggers") or {}
        st.write(
            f"**Next trigger:** {status.get('next_trigger_at') or 'when new calls / feedback arrive'}"
            f" · new calls {status.get('new_calls', 0)}/{triggers.get('min_new_calls') or '-'}"
            f" · new feedback {status.get('new_feedback', 0)}/{triggers.get('min_new_feedback') or '-'}"
        )
        if status.get("last_error"):
            st.error(f"Last error: {status['last_error']}")
    st.subheader("Runs")
    runs = data.runs(function_name)
    if not runs:
        st.info("No pipeline runs recorded yet.")
        return
    st.dataframe(
        _frame(
            [
                {
                    "run_id": r["run_id"],
                    "status": r.get("status"),
                    "trigger": r.get("trigger"),
                    "started_at": r.get("started_at"),
                    "finished_at": r.get("finished_at"),
                    "promoted": (r.get("decision") or {}).get("promoted"),
                }
                for r in runs
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    run_id = st.selectbox("Run", [r["run_id"] for r in runs], key="run")
    run = next(r for r in runs if r["run_id"] == run_id)
    st.markdown(
        f"**Status:** `{run.get('status')}` · **Gate:** "
        f"{'promoted' if (run.get('decision') or {}).get('promoted') else 'not promoted'} — "
        f"{(run.get('decision') or {}).get('reason', '')}"
    )
    st.dataframe(
        _frame(data.stage_rows(run), ["stage", "status", "duration_s", "error", "result", "started_at"]),
        hide_index=True,
        width="stretch",
    )
    for stage in data.stage_rows(run):
        if stage["status"] == "failed":
            st.error(f"{stage['stage']} failed: {stage['error']}")
    found = data.artefacts(run)
    if found:
        st.markdown("**Artefacts**")
        for key, path in found.items():
            st.markdown(f"- {key}: `{path}`")


def golden_tab(function_name: Optional[str]) -> None:
    if function_name is None:
        st.info("No function selected.")
        return
    from vt_middleware.store.executions import get_store

    try:
        selected = _selection(function_name, get_store().count(function_name))
    except ImportError as exc:
        st.warning(f"The selection stage is not available here: {exc}")
        selected = []
    except Exception as exc:  # noqa: BLE001 - show why, keep the rest of the page
        st.warning(f"Selection failed: {type(exc).__name__}: {exc}")
        selected = []
    counts = pd.Series([r["strategy"] for r in selected], dtype="object").value_counts().to_dict()
    cols = st.columns(3)
    cols[0].metric("Steady", counts.get("steady", 0))
    cols[1].metric("Anomalies", counts.get("anomaly", 0))
    cols[2].metric("Calls", get_store().count(function_name))
    if selected:
        st.markdown("**Selected records**")
        st.dataframe(
            _frame(selected, ["strategy", "density", "cluster", "uuid", "return_value"]),
            hide_index=True,
            width="stretch",
        )
        st.markdown("**Density distribution**")
        densities = np.array([r["density"] for r in selected], dtype=float)
        edges = np.histogram_bin_edges(densities, bins=min(20, max(1, len(densities))))
        hist = {
            s: np.histogram([r["density"] for r in selected if r["strategy"] == s], bins=edges)[0]
            for s in ("steady", "anomaly")
        }
        st.bar_chart(pd.DataFrame(hist, index=[f"{e:.2f}" for e in edges[:-1]]), x_label="density", y_label="records")
    points = data.embedding_map(function_name, selected)
    if points:
        st.markdown("**Embedding space (PCA, 2-D)**: steady vs anomaly vs the rest")
        st.scatter_chart(pd.DataFrame(points), x="x", y="y", color="group")
    files = data.golden_files()
    st.markdown("**Golden data files**")
    if not files:
        st.info("No golden data file yet (a pipeline run writes one).")
        return
    path = st.selectbox("File", files, key="golden_file")
    rows = data.read_jsonl(path)
    st.caption(f"{len(rows)} training examples in `{path}`")
    st.dataframe(
        _frame([data.chat_row_view(r) for r in rows[:200]], ["input", "output"]), hide_index=True, width="stretch"
    )
    st.code("\n".join(json.dumps(r, ensure_ascii=False) for r in rows[:5]), language="json")
    with open(path, "rb") as handle:
        st.download_button("Download JSONL", handle.read(), file_name="golden_data.jsonl", mime="application/jsonl")


def _version_picker(key: str) -> Optional[str]:
    versions = data.hook_versions()
    if not versions:
        st.info("No hook versions yet (run `vt synthesize` or `vt evolve`).")
        return None
    names = [v["version"] for v in versions]
    active = data.active_hook_version()
    index = names.index(active) if active in names else len(names) - 1
    return st.selectbox(
        "Hook version", names, index=index, key=key, format_func=lambda v: f"{v} (active)" if v == active else v
    )


def rules_tab() -> None:
    version = _version_picker("rules_version")
    if version is None:
        return
    rules = data.rules(version)
    if not rules:
        st.info(f"{version} has no rules (a pass-through module).")
        return
    estimate = data.hook_manifest(version).get("estimate") or {}
    held = estimate.get("per_rule") or {}
    if estimate.get("folds"):
        fix, harm, negative = (estimate.get(k) for k in ("fix_rate", "harm_rate", "negative_harm_rate"))
        columns = st.columns(3)
        columns[0].metric("Expected held-out fix rate", "-" if fix is None else f"{fix:.0%}")
        columns[1].metric("Expected harm rate", "-" if harm is None else f"{harm:.1%}")
        columns[2].metric("Harm on uncorrected outputs", "-" if negative is None else f"{negative:.1%}")
        st.caption(
            f"{estimate['folds']}-fold cross-validation of the synthesiser on "
            f"{estimate.get('held_out_pairs')} corrected pairs"
        )
    st.dataframe(
        _frame(
            [
                {
                    "rule_id": r.rule_id,
                    "kind": r.kind,
                    "target": r.target,
                    "support": r.support,
                    "confidence": round(r.confidence, 3),
                    "priority": r.priority,
                    "held-out fires": held.get(r.rule_id, {}).get("fires"),
                    "held-out precision": held.get(r.rule_id, {}).get("precision"),
                    "condition": json.dumps(r.condition, ensure_ascii=False),
                    "action": json.dumps(r.action, ensure_ascii=False),
                }
                for r in rules
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    rule_id = st.selectbox("Rule", [r.rule_id for r in rules], key="rule")
    rule = next(r for r in rules if r.rule_id == rule_id)
    st.markdown(f"**{rule.kind}** on {rule.target}: {rule.description}")
    left, right = st.columns(2)
    left.markdown("Condition")
    left.json(rule.condition)
    right.markdown("Action")
    right.json(rule.action)
    pairs = data.evidence(rule, data.feedback_pairs())
    st.markdown(f"**Feedback behind this rule** ({len(pairs)} of {rule.support} supporting pairs stored)")
    for pair in pairs[:20]:
        with st.expander(pair.input_prompt[:100] or pair.pair_id):
            st.code(data.diff_text(pair.bad_output, pair.fixed_output), language="diff")


def hook_tab() -> None:
    active = data.active_hook_version()
    version = _version_picker("hook_version")
    if version is None:
        return
    st.markdown(
        f"Showing **{version}**" + (" — the active version" if version == active else f" (active: {active or 'none'})")
    )
    st.code(data.hook_source(version), language="python", line_numbers=True)
    st.markdown(HOW_HOOKS_WORK)


def versions_tab() -> None:
    _show_rollback_outcome()
    versions = data.hook_versions()
    active = data.active_hook_version()
    st.markdown(f"**Active hook version:** `{active or 'none'}`")
    if versions:
        st.dataframe(
            _frame(
                [
                    {
                        "version": v["version"],
                        "active": bool(v.get("active")),
                        "created_at": v.get("created_at"),
                        "rules": v.get("rule_count"),
                        "validated": (v.get("validation") or {}).get("ok"),
                    }
                    for v in versions
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    promotions = data.promotions()
    routes = json.loads(promotions[-1].get("routes") or "{}") if promotions else {}
    st.markdown(
        "**Model routing:** " + (", ".join(f"`{k}` → `{v}`" for k, v in routes.items()) or "base models as called")
    )
    if promotions:
        st.dataframe(
            _frame(
                [
                    {k: p.get(k) for k in ("at", "action", "hook_version", "fine_tuned_model", "routes", "reason")}
                    for p in promotions
                ]
            ),
            hide_index=True,
            width="stretch",
        )
    gates = data.gate_results()
    if gates:
        st.markdown("**Gate results**")
        st.dataframe(_frame(gates), hide_index=True, width="stretch")
    st.button(
        "Roll back",
        type="primary",
        key="rollback",
        disabled=not versions and not promotions,
        on_click=_rollback,
        help="Make the previous hook version (and model routing) live again.",
    )


def _rollback() -> None:
    """Button callback: runs before the page renders again, so the page shows the new state."""
    try:
        st.session_state["rollback_outcome"] = data.rollback(reason="dashboard rollback")
    except Exception as exc:  # noqa: BLE001 - show the reason in the page
        st.session_state["rollback_outcome"] = {"error": f"{type(exc).__name__}: {exc}"}


def _show_rollback_outcome() -> None:
    outcome = st.session_state.pop("rollback_outcome", None)
    if outcome is None:
        return
    if outcome.get("error"):
        st.error(f"Rollback failed: {outcome['error']}")
    elif outcome.get("rolled_back"):
        st.success(f"Rolled back ({outcome['via']}); active hook version is now {outcome.get('active') or 'none'}")
    else:
        st.warning(f"Nothing to roll back to (active: {outcome.get('active') or 'none'})")


def feedback_tab(function_name: Optional[str]) -> None:
    calls = data.recent_calls(function_name, limit=50)
    if not calls:
        st.info("No captured calls yet.")
        return
    st.dataframe(
        _frame(calls, ["time", "function_name", "status", "model", "hook_version", "input", "output", "run_id"]),
        hide_index=True,
        width="stretch",
    )
    labels = {c["run_id"]: f"{c['time'][:19]} · {c['output'][:60]}" for c in calls}
    run_id = st.selectbox("Call to correct", list(labels), format_func=labels.get, key="call")
    call = next(c for c in calls if c["run_id"] == run_id)
    st.text_area("Input", call["input"], disabled=True, key=f"input_{run_id}")
    with st.form("correction", clear_on_submit=False):
        fixed = st.text_area("Corrected output", call["output"], key=f"fixed_{run_id}")
        comment = st.text_input("Comment (optional)", key=f"comment_{run_id}")
        submitted = st.form_submit_button("Submit correction")
    if submitted:
        if not fixed.strip():
            st.error("The corrected output is empty.")
        else:
            try:
                pair = data.submit_correction(run_id, fixed, comment)
            except Exception as exc:  # noqa: BLE001
                st.error(f"Could not store the correction: {type(exc).__name__}: {exc}")
            else:
                st.success(f"Correction stored as feedback pair {pair.pair_id}")
    stored = data.feedback_pairs(function_name)
    st.markdown(f"**Stored corrections** ({len(stored)})")
    if stored:
        st.dataframe(
            _frame(
                [
                    {
                        "created_at": p.created_at,
                        "run_id": p.run_id,
                        "input": p.input_prompt[:200],
                        "model said": p.bad_output[:200],
                        "corrected": p.fixed_output[:200],
                    }
                    for p in reversed(stored[-50:])
                ]
            ),
            hide_index=True,
            width="stretch",
        )


def main() -> None:
    st.set_page_config(page_title="vt_middleware dashboard", layout="wide")
    function_name = sidebar()
    st.title("vt_middleware")
    tabs = st.tabs(TAB_NAMES)
    renderers = [
        lambda: pipeline_tab(function_name),
        lambda: golden_tab(function_name),
        rules_tab,
        hook_tab,
        versions_tab,
        lambda: feedback_tab(function_name),
    ]
    for tab, render in zip(tabs, renderers):
        with tab:
            try:
                render()
            except Exception as exc:  # noqa: BLE001 - one broken source must not blank the dashboard
                st.error(f"{type(exc).__name__}: {exc}")


main()
