"""The ``vt`` command: run the local server, the demo, each loop stage, status, hooks, dashboard.

Paths come from the ``VT_*`` environment (see ``VTConfig``) or the global options
(``vt --store-path ... --hooks-dir ... --state-dir ... <command>``). Every command exits
non-zero with a one-line ``error:`` message when it cannot do its job.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .cli_views import doctor_table, estimate_text, rules_table, status_table

app = typer.Typer(
    help="vt_middleware: capture, learn from feedback, fine-tune, gate and hot-swap an LLM app.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
hooks_app = typer.Typer(help="Generated hook versions: list, show, roll back.", no_args_is_help=True)
app.add_typer(hooks_app, name="hooks")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"vt_middleware {__version__}")
        raise typer.Exit()


console = Console()
err_console = Console(stderr=True)
DEMO_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
STREAMLIT_APP = Path(__file__).resolve().parent / "dashboards" / "streamlit_app.py"


# Options shared by several commands (one definition each, so their help stays the same).
EPSILON = typer.Option(0.3, help="Neighbours are calls with cosine similarity >= 1 - epsilon.")
TOP_K = typer.Option(50, help="At most this many calls per strategy.")
MIN_GROUP = typer.Option(2, help="Smallest group of similar calls kept (1 keeps lone anomalies too).")
BASE_URL = typer.Option(None, help="OpenAI-compatible server (openai backend; with evolve also the gate).")
BUDGET = typer.Option(None, help="Refuse training estimated above this many USD.")
EPOCHS = typer.Option(1, help="Training epochs.")
MAX_STEPS = typer.Option(None, help="Stop after this many optimiser steps (local backend).")


def _fail(message: str, code: int = 1) -> None:
    err_console.print(Text(f"error: {message}", style="bold red"))
    raise typer.Exit(code)


def handled(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our errors (and missing files) into a red one-line message and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .errors import VTError

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except (VTError, FileNotFoundError, ValueError, ImportError) as exc:
            _fail(f"{type(exc).__name__}: {exc}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


@app.callback()
def _global(
    store_path: Optional[Path] = typer.Option(None, help="LanceDB store directory (VT_STORE_PATH)."),
    hooks_dir: Optional[Path] = typer.Option(None, help="Generated hook versions (VT_HOOKS_DIR)."),
    state_dir: Optional[Path] = typer.Option(None, help="Run records and evolver status (VT_STATE_DIR)."),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the installed version and exit."
    ),
) -> None:
    """Set the paths every command uses (they override the VT_* environment)."""
    overrides = {
        k: v
        for k, v in (("store_path", store_path), ("hooks_dir", hooks_dir), ("state_dir", state_dir))
        if v is not None
    }
    if overrides:  # `vt dashboard` passes the resulting config on to streamlit
        from .config import configure

        configure(**overrides)


# --- server, demo, dashboard ---------------------------------------------------------------
@app.command()
@handled
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port."),
    model: Optional[str] = typer.Option(None, help="Default model id (smollm2-135m-instruct or vt-tiny-random)."),
    data_dir: Path = typer.Option(Path(".vt/server"), help="Where uploaded files and fine-tuned models live."),
    max_body_bytes: int = typer.Option(1 << 20, help="Largest request body (413 past it)."),
    max_tokens: int = typer.Option(4096, help="Largest max_tokens (also capped at the model's context)."),
    max_n: int = typer.Option(8, help="Most choices (n) per request."),
    max_generation_s: float = typer.Option(120.0, help="Generation stops after this many seconds."),
) -> None:
    """Serve a local model over OpenAI's API (chat, files, fine-tuning jobs) until Ctrl-C or SIGTERM."""
    from .server.limits import ServerLimits
    from .server.runner import serve as run_server

    run_server(
        host=host,
        port=port,
        model=model,
        data_dir=data_dir,
        limits=ServerLimits(max_body_bytes, max_tokens, max_n, max_generation_s),
    )


@app.command()
@handled
def demo(
    quick: bool = typer.Option(False, "--quick", help="Tiny model and few requests (a smoke run)."),
    demo_dir: Path = typer.Option(Path(".vt-demo"), "--dir", help="Where the demo keeps its store and state."),
    corrections: Optional[int] = typer.Option(None, help="Corrections that trigger the evolution run."),
    keep: bool = typer.Option(False, help="Keep the previous demo data instead of starting fresh."),
) -> None:
    """Run the offline demo: the sample app serves from several threads while the evolver learns and hot-swaps."""
    if not DEMO_SCRIPT.exists():
        _fail(f"the demo script is not at {DEMO_SCRIPT} (run from a source checkout of vt_middleware)")
    argv = [sys.executable, str(DEMO_SCRIPT), "--dir", str(demo_dir)]
    argv += ["--quick"] if quick else []
    argv += ["--corrections", str(corrections)] if corrections else []
    argv += ["--keep"] if keep else []
    raise typer.Exit(subprocess.call(argv))


@app.command("api")
@handled
def api(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (non-loopback needs VT_API_TOKEN)."),
    port: int = typer.Option(8080, help="Port to listen on."),
) -> None:
    """Serve the management API (feedback, calls, runs, golden data, rules, hooks, promotions, cost)."""
    from .api.app import TOKEN_ENV, create_app, is_loopback

    protect = not is_loopback(host)
    application = create_app(protect_reads=protect)  # refuses a non-loopback host without a token
    import uvicorn

    console.print(
        f"vt api on http://{host}:{port}  (OpenAPI: /openapi.json; writes need {TOKEN_ENV}"
        f"{', and so does every read' if protect else ''})"
    )
    uvicorn.run(application, host=host, port=port, log_level="info")


@app.command()
@handled
def dashboard(
    port: int = typer.Option(8501, help="Port of the web dashboard."),
    host: str = typer.Option("localhost", help="Address to bind."),
    once: bool = typer.Option(False, "--once", help="Print status and the last run here, then exit."),
) -> None:
    """Open the Streamlit dashboard on http://HOST:PORT for the configured store and state
    (``--once``: the same state as text in the terminal, no server)."""
    import importlib.util

    if once:
        console.print(status_table(_status_info()))
        _print_last_run()
        return
    if importlib.util.find_spec("streamlit") is None:
        _fail("the dashboard needs streamlit: pip install 'vt_middleware[dashboard]'")
    from .config import get_config

    config = get_config()
    env = dict(
        os.environ,
        VT_STORE_PATH=str(Path(config.store_path).resolve()),
        VT_HOOKS_DIR=str(Path(config.hooks_dir).resolve()),
        VT_STATE_DIR=str(Path(config.state_dir).resolve()),
    )
    console.print(f"vt dashboard on http://{host}:{port}  (store {env['VT_STORE_PATH']})")
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(STREAMLIT_APP),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)  # streamlit replaces us: Ctrl-C and kill reach it directly


# --- loop stages ---------------------------------------------------------------------------
@app.command()
@handled
def extract(
    function_name: str = typer.Argument(..., help="The captured function to select golden data for."),
    output: Path = typer.Option(Path("golden_data.jsonl"), "--output", "-o", help="ChatML JSONL to write."),
    epsilon: float = EPSILON,
    top_k: int = TOP_K,
    min_group_size: int = MIN_GROUP,
) -> None:
    """Select golden data (steady state + anomalies) from captured calls and write ChatML JSONL."""
    with console.status(f"selecting golden data for {function_name} ..."):
        from .api.runs import make_extractor

        extractor = make_extractor(epsilon, top_k, min_group_size)
        steady = extractor.select_steady_state(function_name)
        anomalies = extractor.select_anomalies(function_name)
        written = extractor.extract_golden_data(function_name, str(output))
    table = Table(title=f"golden data of {function_name}")
    for column in ("strategy", "count", "density range"):
        table.add_column(column)
    for name, items in (("steady", steady), ("anomaly", anomalies)):
        densities = [float(c.density) for c in items or []]
        span = f"{min(densities):.3f} .. {max(densities):.3f}" if densities else "-"
        table.add_row(name, str(len(items or [])), span)
    console.print(table)
    console.print(f"wrote {written}")


@app.command()
@handled
def synthesize(
    function_name: Optional[str] = typer.Option(None, "--function", "-f", help="Only this function's feedback."),
    activate: bool = typer.Option(False, help="Make the new version active if it validates."),
    min_support: int = typer.Option(2, help="Pairs a rule needs behind it."),
    min_confidence: float = typer.Option(0.8, help="Share of pairs a rule must agree with."),
) -> None:
    """Synthesise a new hook version from the stored feedback pairs."""
    from .config import get_config
    from .errors import DataError
    from .store.executions import get_store
    from .synthesize.pipeline import synthesize_version

    pairs = get_store().list_feedback(function_name)
    if not pairs:
        raise DataError(
            f"no feedback pairs{' for ' + function_name if function_name else ''} in "
            f"{get_config().store_path}; record corrections with vt.feedback(run_id, fixed_output)"
        )
    from .synthesize.negatives import uncorrected_outputs

    names = sorted(
        {
            p.context.get("function_name")
            for p in pairs
            if isinstance(p.context, dict) and isinstance(p.context.get("function_name"), str)
        }
    )
    negatives = [item for name in names for item in uncorrected_outputs(name, pairs)]
    with console.status(
        f"synthesising rules from {len(pairs)} feedback pairs and {len(negatives)} uncorrected outputs ..."
    ):
        result = synthesize_version(
            pairs,
            get_config().hooks_dir,
            activate=activate,
            min_support=min_support,
            min_confidence=min_confidence,
            negatives=negatives,
        )
    console.print(rules_table(result.version, [r.to_dict() for r in result.rules], result.estimate))
    console.print(estimate_text(result.estimate))
    state = "active" if result.activated else "not active"
    console.print(
        f"hook version {result.version} ({state}), validation ok={result.validation.get('ok')}: {result.hook_path}"
    )


@app.command()
@handled
def train(
    jsonl: Path = typer.Argument(..., help="ChatML JSONL training file.", exists=True, dir_okay=False),
    backend: str = typer.Option("local", help="'local' (LoRA on CPU) or 'openai' (API or --base-url server)."),
    base_model: Optional[str] = typer.Option(None, help="Model to fine-tune."),
    base_url: Optional[str] = BASE_URL,
    max_budget_usd: Optional[float] = BUDGET,
    epochs: int = EPOCHS,
    max_steps: Optional[int] = MAX_STEPS,
    output_dir: Path = typer.Option(Path(".vt/models"), help="Where local adapters go."),
) -> None:
    """Fine-tune on a JSONL file, showing progress and loss; prints the fine-tuned model id."""
    from .dashboards.cli_dashboard import CLIDashboard

    monitor = CLIDashboard(console)
    from .api.runs import make_trainer

    trainer = make_trainer(backend, base_model, base_url, max_budget_usd, epochs, max_steps, output_dir, monitor)
    monitor.on_stage_start("prepare", 1)
    file_id = trainer.prepare_data(str(jsonl))
    monitor.on_stage_complete("prepare", {"file_id": file_id})
    monitor.on_stage_start("train")
    try:
        job_id = trainer.start_training(
            file_id, model=base_model or getattr(trainer, "model", None), hyperparameters={"n_epochs": epochs}
        )
        result = trainer.wait(job_id, poll_interval=1.0, timeout=None)
    except BaseException as exc:
        monitor.on_stage_error("train", exc)
        raise
    monitor.on_stage_complete("train", {"job_id": job_id, "fine_tuned_model": result.get("fine_tuned_model")})
    monitor.close()
    console.print(f"fine-tuned model: {result.get('fine_tuned_model')}")


@app.command()
@handled
def evolve(
    function_name: str = typer.Argument(..., help="The captured function to evolve."),
    backend: str = typer.Option("none", help="Trainer: 'none' (hooks only), 'local' or 'openai'."),
    base_model: Optional[str] = typer.Option(None, help="Model the app calls (routed to the fine-tune)."),
    base_url: Optional[str] = BASE_URL,
    max_budget_usd: Optional[float] = BUDGET,
    epochs: int = EPOCHS,
    max_steps: Optional[int] = MAX_STEPS,
    epsilon: float = EPSILON,
    top_k: int = TOP_K,
    min_group_size: int = MIN_GROUP,
    gate_items: int = typer.Option(16, min=1, help="Gate: at most this many held-out items per source."),
    gate_max_tokens: int = typer.Option(64, min=1, help="Gate: tokens generated per answer."),
    output_dir: Path = typer.Option(Path(".vt/evolve"), help="Golden data and training files."),
) -> None:
    """Run one evolution cycle (extract, synthesize, prepare, train, evaluate, promote) with live progress."""
    from .api.runs import RunOptions, build_pipeline
    from .dashboards.cli_dashboard import CLIDashboard

    monitor = CLIDashboard(console)
    options = RunOptions(
        function_name,
        backend=backend,
        base_model=base_model,
        base_url=base_url,
        max_budget_usd=max_budget_usd,
        epochs=epochs,
        max_steps=max_steps,
        epsilon=epsilon,
        top_k=top_k,
        min_group_size=min_group_size,
        gate_items=gate_items,
        gate_max_tokens=gate_max_tokens,
        output_dir=str(output_dir),
    )
    pipeline = build_pipeline(options, monitor)
    try:
        result = pipeline.run(function_name, output_dir=str(output_dir / function_name))
    except Exception:
        monitor.summary(pipeline.last_result)
        raise
    monitor.summary(result)
    console.print(f"run record: {result['run_dir']}")


# --- status and hooks -------------------------------------------------------------------------
@app.command()
@handled
def flush(timeout: float = typer.Option(120.0, help="Seconds to wait for the store.")) -> None:
    """Land records a process left in the journal (exited, killed, or the store was down)."""
    from .capture.worker import capture_stats
    from .capture.worker import flush as flush_capture
    from .runtime.live import get_promoter

    before = capture_stats()["journal_pending"]
    done = flush_capture(timeout)
    stats = capture_stats()
    console.print(
        f"journal: {before} records waiting; {stats['replayed']} replayed into the store; "
        f"{stats['journal_pending']} still waiting"
    )
    records = get_promoter().records
    promotions_before = len(records.waiting())
    if promotions_before:
        records.replay()
        done = records.flush(timeout) and done
    promotions_left = len(records.waiting())
    console.print(f"promotion rows: {promotions_before} waiting; {promotions_left} still waiting")
    if not done or stats["journal_pending"] or promotions_left:
        _fail("the store did not take every journaled record (see vt status); run vt flush again later")


@app.command()
@handled
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Where things are: store counts, feedback, hook versions, recent runs, evolver, promotions."""
    info = _status_info()
    if as_json:
        print(json.dumps(info, indent=2, default=str))
        return
    console.print(status_table(info))


@app.command()
@handled
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    journal_path: Optional[Path] = typer.Option(None, help="Capture journal directory (VT_JOURNAL_PATH)."),
) -> None:
    """Check capture's journal: records waiting for the store, records quarantined (could not be
    read or were rejected by the store), where they are and what to do with them; and promotion
    rows journaled but not yet in the store."""
    from .capture.journal import Journal
    from .config import get_config
    from .runtime.pending import pending_dir, waiting_rows

    info = Journal(journal_path or get_config().journal_path).report()
    folder = pending_dir(get_config())
    info["promotion_rows_waiting"] = len(waiting_rows(folder))
    info["promotion_journal_path"] = str(folder)
    if info["promotion_rows_waiting"]:
        flush_them = "run `vt flush` to write the waiting promotion rows into the store"
        info["advice"] = flush_them if not info["quarantined"] else f"{info['advice']}; {flush_them}"
    if as_json:
        print(json.dumps(info, indent=2))
        return
    console.print(doctor_table(info))
    console.print(Text(f"what to do: {info['advice']}"), style="yellow" if info["quarantined"] else "green")


def _status_info() -> dict:
    from .api import service as data
    from .config import get_config
    from .store.executions import get_store

    config = get_config()
    store = get_store()
    functions = {name: store.count(name) for name in store.function_names()}
    info = {
        "store_path": str(config.store_path),
        "hooks_dir": str(config.hooks_dir),
        "state_dir": str(config.state_dir),
        "calls": functions,
        "feedback_pairs": len(store.list_feedback()),
        "hook_versions": [v["version"] for v in data.hook_versions()],
        "active_hook_version": data.active_hook_version(),
        "runs": [
            {k: r.get(k) for k in ("run_id", "function_name", "status", "started_at")}
            | {"promoted": (r.get("decision") or {}).get("promoted")}
            for r in data.runs(limit=5)
        ],
        "evolver": data.evolver_status(),
        "promotions": len(data.promotions()),
    }
    return info


def _print_last_run() -> None:
    """The newest run record as the CLI dashboard's stage and outcome tables."""
    from .api import service as data
    from .dashboards.cli_dashboard import CLIDashboard

    runs = data.runs(limit=1)
    if not runs:
        console.print("no evolution runs yet (run `vt evolve FUNCTION`)")
        return
    run = runs[0]
    console.print(f"last run {run['run_id']} of {run.get('function_name')}: {run.get('status')}")
    monitor = CLIDashboard(console)
    for stage, entry in (run.get("stages") or {}).items():
        monitor.stages[stage] = {key: entry.get(key) for key in ("status", "result", "error", "duration_s")}
    decision = run.get("decision") or {}
    result = dict(run.get("result") or {})  # the gate's verdict lives in the record's decision
    result.setdefault(
        "gate", {"promote": decision.get("promoted", False), "reason": decision.get("reason", "not evaluated")}
    )
    result["promoted"] = bool(result.get("promoted") or decision.get("promoted"))
    monitor.summary(result)


@hooks_app.command("list")
@handled
def hooks_list() -> None:
    """All hook versions, oldest first; the active one is marked."""
    from .api import service as data

    versions = data.hook_versions(include_broken=True)
    if not versions:
        console.print("no hook versions yet (run `vt synthesize` or `vt evolve`)")
        return
    table = Table(title="hook versions")
    for column in ("version", "active", "created", "rules", "validated"):
        table.add_column(column)
    broken = [m for m in versions if "error" in m]
    for manifest in versions:
        if "error" in manifest:
            table.add_row(manifest["version"], "*" if manifest.get("active") else "", "-", "-", "broken")
            continue
        table.add_row(
            manifest["version"],
            "*" if manifest.get("active") else "",
            str(manifest.get("created_at", "")),
            str(manifest.get("rule_count", 0)),
            str((manifest.get("validation") or {}).get("ok")),
        )
    console.print(table)
    for manifest in broken:
        console.print(Text(f"{manifest['version']}: {manifest['error']}"), style="red")


@hooks_app.command("show")
@handled
def hooks_show(
    version: Optional[str] = typer.Argument(None, help="Version like v0003 (default: the active one)."),
    code: bool = typer.Option(True, help="Print the generated module."),
) -> None:
    """A hook version's rules and generated code."""
    from rich.syntax import Syntax

    from .api import service as data
    from .errors import HookError

    version = version or data.active_hook_version()
    if version is None:
        raise HookError("no active hook version; name one: vt hooks show v0001")
    estimate = data.hook_manifest(version).get("estimate")
    console.print(rules_table(version, [r.to_dict() for r in data.rules(version)], estimate))
    console.print(estimate_text(estimate))
    if code:
        console.print(Syntax(data.hook_source(version), "python", line_numbers=True))


@hooks_app.command("rollback")
@handled
def hooks_rollback(
    to: Optional[str] = typer.Option(None, help="Roll back to this version instead of the previous one."),
    reason: str = typer.Option("cli rollback", help="Recorded with the rollback."),
) -> None:
    """Make the previous hook version (and model routing) live again."""
    from .api import service as data

    outcome = data.rollback(reason=reason, to=to)
    if not outcome.get("rolled_back"):
        _fail(f"nothing to roll back to (active: {outcome.get('active') or 'none'})")
    console.print(f"rolled back via {outcome['via']}; active hook version: {outcome.get('active') or 'none'}")


def main() -> None:
    """Entry point of the ``vt`` script."""
    app()


if __name__ == "__main__":
    main()
