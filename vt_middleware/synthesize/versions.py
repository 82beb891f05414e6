"""Immutable hook versions on disk: new versions are written here; making one live is a promotion.

The folder's layout, the manifest reader and the derived ``ACTIVE`` / ``history.jsonl`` files
are ``runtime/hook_dir.py``'s (``HookVersionStore`` extends it). A version directory is reserved
with ``os.mkdir`` (atomic, so two writers never share a number) and is complete once its
manifest exists. :meth:`HookVersionStore.activate` records a hooks-only promotion
(``runtime/live.py``): the promotion record, not ``ACTIVE``, says what is live.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..errors import ConfigError, HookError
from ..runtime.hook_dir import HOOK_FILE, MANIFEST_FILE, HookDir, write_atomic
from ..types import Rule, utc_now_iso


class HookVersionStore(HookDir):
    """Versions of generated hooks under ``hooks_dir`` (survives restarts: all state is on disk)."""

    def __init__(self, hooks_dir: str | os.PathLike) -> None:
        super().__init__(hooks_dir)
        self.hooks_dir.mkdir(parents=True, exist_ok=True)

    def reserve_version(self) -> str:
        """Claim the next version name by creating its directory."""
        names = self.version_names()
        number = int(names[-1][1:]) + 1 if names else 1
        while True:
            name = f"v{number:04d}"
            try:
                os.mkdir(self.hooks_dir / name)
                return name
            except FileExistsError:
                number += 1

    def create_version(
        self,
        code: str,
        *,
        rules: Sequence[Rule] = (),
        source_pairs: Iterable[str] = (),
        validation: Optional[Dict[str, Any]] = None,
        version: Optional[str] = None,
        extra: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Write ``code`` and its manifest as a new immutable version; return the manifest."""
        if not isinstance(code, str) or not code.strip():
            raise ConfigError("create_version: code must be non-empty module source")
        version = version or self.reserve_version()
        folder = self.folder(version)
        if (folder / MANIFEST_FILE).exists():
            raise HookError(f"version {version} already exists and is immutable")
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / HOOK_FILE, code)
        manifest = {
            "version": version,
            "created_at": utc_now_iso(),
            "rule_count": len(rules),
            "source_pairs": sorted(set(source_pairs)),
            "validation": validation or {"ok": None, "reason": "not validated"},
            "rules": [rule.to_dict() for rule in rules],
            **(extra or {}),
        }
        write_atomic(folder / MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False, indent=2, default=str))
        for name in (HOOK_FILE, MANIFEST_FILE):
            os.chmod(folder / name, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        return manifest

    def list_versions(self, include_broken: bool = False) -> List[Dict[str, Any]]:
        """Manifests of all complete versions, oldest first (``active`` flag added). A version
        whose manifest cannot be read is skipped, or with ``include_broken`` listed as
        ``{"version", "active", "error"}``."""
        active = self.active_version()
        out = []
        for name in self.version_names():
            if (self.hooks_dir / name / MANIFEST_FILE).exists():
                try:
                    manifest = self.manifest(name)
                except HookError as exc:
                    if include_broken:
                        out.append({"version": name, "active": name == active, "error": str(exc)})
                    continue
                manifest["active"] = name == active
                out.append(manifest)
        return out

    def activate(self, version: str, *, reason: str = "activate", force: bool = False) -> Dict[str, Any]:
        """Make ``version`` the live hooks (model routes unchanged), recorded as a promotion in the
        configured store; refuses a version that failed validation unless forced. Returns the row."""
        from ..runtime.live import get_promoter

        manifest = self.manifest(version)
        if manifest.get("validation", {}).get("ok") is False and not force:
            raise HookError(f"version {version} failed validation; activate(..., force=True) to override")
        promoter = get_promoter()
        row = promoter.promote(None, None, version, hooks_dir=self.hooks_dir, reason=reason)
        promoter.flush_files()
        return row

    def rollback(self, to: Optional[str] = None, *, reason: str = "rollback") -> Optional[str]:
        """Roll back what is live (hooks and model routes) with the one rollback, recorded for
        every instance: to the pair before the latest promotion, or to the newest earlier pair
        serving version ``to`` (promoted when there is none). Returns the live hook version."""
        from ..runtime.live import rollback

        if to is not None:
            self.manifest(to)  # names an existing version
        return rollback(reason=reason, to=to, catch_up=True).get("hook_version")
