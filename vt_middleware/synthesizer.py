"""Seed-compatible names for the synthesize stage, and the seed's ``HookVersionManager``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import DataError, HookError
from .synthesize import (
    FeedbackDiffAnalyzer,
    HookScriptGenerator,
    HookVersionStore,
    RuleSetSynthesizer,
    run_synthesis_pipeline,
)
from .synthesize.codegen import DEFAULT_FILENAME, write_atomic


class HookVersionManager:
    """The seed's version manager over :class:`HookVersionStore`: the same ``vNNNN/`` folders
    and ``ACTIVE`` pointer the hot-reload watcher follows, so a rollback here is what live
    calls get. ``versions_dir`` defaults to the configured ``hooks_dir``. When the folder
    holds the seed's ``generated_prompt_hook.py``, it is rewritten to the active version."""

    def __init__(self, versions_dir: Optional[str | os.PathLike] = None) -> None:
        if versions_dir is None:
            from .config import get_config

            versions_dir = get_config().hooks_dir
        self.store = HookVersionStore(versions_dir)

    @property
    def versions_dir(self) -> Path:
        return self.store.hooks_dir

    def save_version(self, source: str, rules_count: int = 0) -> str:
        """Keep ``source`` (a hook module's code) as a new version and make it active; returns its id."""
        if not isinstance(source, str) or not source.strip():
            raise DataError("save_version: source must be non-empty Python module code")
        try:
            compile(source, "<hook source>", "exec")
        except SyntaxError as exc:
            raise DataError(f"save_version: source is not valid Python: line {exc.lineno}: {exc.msg}") from None
        if isinstance(rules_count, bool) or not isinstance(rules_count, int) or rules_count < 0:
            raise DataError(f"save_version: rules_count must be a non-negative integer, got {rules_count!r}")
        manifest = self.store.create_version(
            source,
            extra={"rule_count": rules_count},
            validation={"ok": None, "reason": "saved through HookVersionManager"},
        )
        self.store.activate(manifest["version"], reason="save_version")
        self._sync_script()
        return str(manifest["version"])

    def rollback(self, version_id: Optional[str] = None) -> Optional[str]:
        """Go back to the previously active version (or to ``version_id``); returns the active id.
        An unknown or malformed ``version_id`` raises a ``ValueError`` naming it."""
        if version_id is not None:
            try:
                self.store.manifest(version_id)
            except HookError as exc:
                raise DataError(str(exc)) from None
        active = self.store.rollback(version_id, reason="HookVersionManager.rollback")
        self._sync_script()
        return active

    def list_versions(self) -> List[Dict[str, Any]]:
        """Versions oldest first: ``version_id``, ``timestamp``, ``rules_count``, ``active``, ``path``."""
        return [self._info(m) for m in self.store.list_versions()]

    def get_active_version(self) -> Optional[Dict[str, Any]]:
        """The active version's entry (as in :meth:`list_versions`), or None."""
        active = self.store.active_version()
        if active is None:
            return None
        try:
            manifest = self.store.manifest(active)
        except HookError:
            return None
        return self._info({**manifest, "active": True})

    def _info(self, manifest: Dict[str, Any]) -> Dict[str, Any]:
        version = str(manifest["version"])
        return {
            "version_id": version,
            "timestamp": manifest.get("created_at"),
            "rules_count": int(manifest.get("rule_count") or 0),
            "active": bool(manifest.get("active")),
            "path": str(self.store.hook_path(version)),
        }

    def _sync_script(self) -> None:
        script = self.versions_dir / DEFAULT_FILENAME
        active = self.store.active_version()
        if script.exists() and active is not None:
            write_atomic(script, self.store.hook_path(active).read_text(encoding="utf-8"))


__all__ = [
    "FeedbackDiffAnalyzer",
    "HookScriptGenerator",
    "HookVersionManager",
    "HookVersionStore",
    "RuleSetSynthesizer",
    "run_synthesis_pipeline",
]
