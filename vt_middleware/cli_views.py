"""What the ``vt`` command prints: rich tables for status, doctor, rules and the self-estimate."""

from __future__ import annotations

from typing import List, Optional

from rich.table import Table
from rich.text import Text


def status_table(info: dict) -> Table:
    table = Table(title="vt status", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for key in ("store_path", "hooks_dir", "state_dir"):
        table.add_row(key, Text(info[key]))
    table.add_row("calls", Text(", ".join(f"{k}: {n}" for k, n in info["calls"].items()) or "none"))
    table.add_row("feedback pairs", str(info["feedback_pairs"]))
    table.add_row("hook versions", Text(", ".join(info["hook_versions"]) or "none"))
    table.add_row("active hooks", info["active_hook_version"] or "none")
    table.add_row("promotions", str(info["promotions"]))
    evolver = info["evolver"]
    table.add_row(
        "evolver",
        Text(
            "not running here"
            if not evolver
            else f"{evolver.get('state')} ({evolver.get('runs', 0)} runs, next trigger "
            f"{evolver.get('next_trigger_at') or 'on new calls/feedback'})"
        ),
    )
    for run in info["runs"]:
        table.add_row(
            "run",
            Text(f"{run['run_id']} {run['function_name']} {run['status']}{' promoted' if run['promoted'] else ''}"),
        )
    return table


def doctor_table(info: dict) -> Table:
    """``vt doctor``: the journal's waiting and quarantined records, and waiting promotion rows."""
    table = Table(title="vt doctor", show_header=False)
    keys = ("journal_path", "segments", "pending_records", "quarantined", "quarantine_path")
    for key in (*keys, "promotion_journal_path", "promotion_rows_waiting"):
        table.add_row(key, Text(str(info[key])))
    for reason, n in info["quarantine_reasons"].items():
        table.add_row("  reason", Text(f"{n} x {reason}"))
    for example in info["examples"]:
        table.add_row("  e.g.", Text(f"{example['segment']} @ byte {example['offset']}: {example['reason']}"))
    return table


def rules_table(version: str, rules: List[dict], estimate: Optional[dict] = None) -> Table:
    per_rule = (estimate or {}).get("per_rule") or {}
    table = Table(title=f"rules of hook version {version}")
    for column in (
        "rule",
        "kind",
        "target",
        "support",
        "confidence",
        "held-out fires",
        "held-out precision",
        "description",
    ):
        table.add_column(column, overflow="fold")
    for rule in rules:
        held = per_rule.get(str(rule.get("rule_id")), {})
        precision = held.get("precision")
        table.add_row(
            Text(str(rule.get("rule_id", ""))),
            str(rule.get("kind", "")),
            str(rule.get("target", "")),
            str(rule.get("support", "")),
            f"{float(rule.get('confidence', 0)):.2f}",
            str(held.get("fires", "-")),
            "-" if precision is None else f"{precision:.2f}",
            Text(str(rule.get("description", ""))),
        )
    return table


def estimate_text(estimate: Optional[dict]) -> Text:
    """The synthesiser's k-fold self-estimate as one line (or why there is none)."""
    estimate = estimate or {}
    if not estimate.get("folds"):
        return Text(f"self-estimate: none ({estimate.get('reason', 'not recorded for this version')})")

    def rate(key: str) -> str:
        value = estimate.get(key)
        return "-" if value is None else f"{value:.1%}"

    training = estimate.get("training") or {}
    return Text(
        f"self-estimate ({estimate['folds']}-fold cross-validation on {estimate.get('held_out_pairs')} pairs): "
        f"held-out exact-fix rate {rate('fix_rate')}, harm rate on good outputs {rate('harm_rate')}; "
        f"harm on {training.get('negatives', 0)} uncorrected outputs {rate('negative_harm_rate')}; "
        f"training pairs fixed exactly {training.get('exact_fixed', '-')}/{training.get('pairs', '-')}"
        + (
            f"; not emitted (low held-out precision): {', '.join(estimate['not_emitted'])}"
            if estimate.get("not_emitted")
            else ""
        )
    )
