"""A realistic state for the dashboard tests, written through the real APIs: captured calls with
MiniLM embeddings in LanceDB, feedback pairs, two synthesised hook versions promoted one after
the other (with a fine-tuned model route), a run record with golden data, evolver status."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from synth_data import make_pairs

FUNCTION = "generate_review_summary"
BASE_MODEL = "smollm2-135m-instruct"
FINE_TUNED = "ft:smollm2-135m-instruct:vt:demo"


@dataclass
class Seeded:
    root: Path
    env: Dict[str, str]
    run_id: str
    call_ids: List[str]
    versions: List[str]
    golden_path: Path


def seed_dashboard_state(root: Path) -> Seeded:
    """Configure vt_middleware on ``root`` and fill it; returns the env a dashboard process needs."""
    import vt_middleware as vt
    from vt_middleware.evolve.evolver import Evolver
    from vt_middleware.evolve.run_records import RunRecorder, write_json_atomic
    from vt_middleware.evolve.swap import Promoter
    from vt_middleware.store.embedding import get_embedder
    from vt_middleware.store.executions import get_store
    from vt_middleware.synthesize.pipeline import synthesize_version
    from vt_middleware.types import CallRecord

    config = vt.reset(
        store_path=root / "lance",
        journal_path=root / "journal",
        hooks_dir=root / "hooks",
        state_dir=root / "state",
        strict=True,
    )
    cases = [(p, f) for p, f in make_pairs(60, seed=5) if f in ("preamble", "rating", "currency")]
    records = [
        CallRecord(
            FUNCTION,
            {"messages": [{"role": "user", "content": p.input_prompt}]},
            p.bad_output,
            kind="openai",
            model_requested=BASE_MODEL,
            model_used=BASE_MODEL,
            timestamp_utc=f"2025-01-01T12:{i:02d}:00+00:00",
        )
        for i, (p, _family) in enumerate(cases[:24])
    ]
    vectors = get_embedder(config.embedding_model).embed([r.embedding_text() for r in records])
    get_store().write_calls(
        [{"uuid": r.run_id, "properties": r.to_properties(), "vector": v.tolist()} for r, v in zip(records, vectors)]
    )
    pairs = []
    for (pair, _family), record in zip(cases[:24], records):
        pair.run_id = record.run_id
        pair.context = {"function_name": FUNCTION}
        get_store().add_feedback(pair)
        pairs.append(pair)

    first = synthesize_version(pairs[:12], config.hooks_dir)
    second = synthesize_version(pairs, config.hooks_dir)
    promoter = Promoter(hooks_dir=config.hooks_dir)
    promoter.promote(None, None, first.version, reason="seed: first hooks")
    promoter.promote(BASE_MODEL, FINE_TUNED, second.version, reason="seed: gate passed")
    promoter.flush_files()  # ACTIVE and the mirror are derived in the background

    out = root / "evolve"
    out.mkdir(parents=True, exist_ok=True)
    golden = out / "golden_data.jsonl"
    golden.write_text(
        "".join(
            json.dumps({"messages": [*r.inputs["messages"], {"role": "assistant", "content": p.fixed_output}]}) + "\n"
            for r, (p, _f) in zip(records[:10], cases[:10])
        ),
        encoding="utf-8",
    )
    record = RunRecorder(FUNCTION, config.state_dir, trigger="feedback")
    record.stage_start("extract")
    record.stage_end("extract", "succeeded", {"steady": 8, "anomalies": 2, "golden_examples": 10, "path": str(golden)})
    record.stage_start("synthesize")
    record.stage_end(
        "synthesize",
        "succeeded",
        {"hook_version": second.version, "rules": len(second.rules), "path": second.hook_path},
    )
    record.stage_start("prepare")
    record.stage_end("prepare", "skipped", {"skipped": True, "reason": "no trainer configured"})
    record.stage_start("train")
    record.stage_end("train", "failed", error="TrainingError: fine-tuning job ftjob-1 was cancelled")
    metrics = {"candidate_score": 0.91, "incumbent_score": 0.62}
    record.decide(True, "candidate beats incumbent by 0.29", metrics)
    record.finish(
        "succeeded",
        {
            "golden_data_path": str(golden),
            "hook_script_path": second.hook_path,
            "hook_version": second.version,
            "run_dir": str(record.folder),
            "train": {"fine_tuned_model": FINE_TUNED},
            "rules": [r.to_dict() for r in second.rules],
        },
    )

    evolver = Evolver(
        object(),
        FUNCTION,
        every="1h",
        min_new_calls=50,
        min_new_feedback=5,
        check_interval=3600,
        state_dir=config.state_dir,
    )
    evolver.start()
    snapshot = evolver.status()
    evolver.stop()
    write_json_atomic(Path(config.state_dir) / "evolver.json", {**snapshot, "runs": 3, "promotions": 1})

    env = {
        "VT_STORE_PATH": str(config.store_path),
        "VT_HOOKS_DIR": str(config.hooks_dir),
        "VT_STATE_DIR": str(config.state_dir),
        "VT_JOURNAL_PATH": str(config.journal_path),
    }
    return Seeded(root, env, record.run_id, [r.run_id for r in records], [first.version, second.version], golden)
