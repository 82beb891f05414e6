"""Immutable hook versions on disk, an atomic ACTIVE pointer, and rollback history.

Layout of ``hooks_dir``::

    v0001/hook.py          generated module (read-only once the manifest exists)
    v0001/manifest.json    version, created_at, rule_count, source_pairs, validation, rules
    ACTIVE                 the active version's name, replaced atomically (tmp + os.replace)
    history.jsonl          one line per activation / rollback

A version directory is reserved with ``os.mkdir`` (atomic, so two writers never
share a number) and is complete once its manifest exists.
"""
from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ..errors import ConfigError, HookError
from ..types import Rule, utc_now_iso
from .codegen import write_atomic

VERSION_RE = re.compile(r"^v(\d{4,})$")
HOOK_FILE = "hook.py"
MANIFEST_FILE = "manifest.json"
ACTIVE_FILE = "ACTIVE"
HISTORY_FILE = "history.jsonl"


class HookVersionStore:
    """Versions of generated hooks under ``hooks_dir`` (survives restarts: all state is on disk)."""

    def __init__(self, hooks_dir: str | os.PathLike) -> None:
        self.hooks_dir = Path(hooks_dir)
        self.hooks_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # --- versions -----------------------------------------------------------
    def _numbers(self) -> List[int]:
        numbers = []
        for entry in self.hooks_dir.iterdir():
            match = VERSION_RE.match(entry.name)
            if match and entry.is_dir():
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def reserve_version(self) -> str:
        """Claim the next version name by creating its directory."""
        number = (self._numbers() or [0])[-1] + 1
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
        folder = self._folder(version)
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

    def _folder(self, version: str) -> Path:
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise ConfigError(f"not a hook version name: {version!r} (expected like 'v0001')")
        return self.hooks_dir / version

    def hook_path(self, version: str) -> Path:
        return self._folder(version) / HOOK_FILE

    def manifest(self, version: str) -> Dict[str, Any]:
        path = self._folder(version) / MANIFEST_FILE
        if not path.exists():
            raise HookError(f"hook version {version} does not exist in {self.hooks_dir}")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise HookError(f"hook version {version} has a broken manifest {path}: {exc}; it cannot be "
                            f"activated (restore the file or delete the folder {path.parent})") from exc
        if not isinstance(manifest, dict):
            raise HookError(f"hook version {version} has a broken manifest {path}: expected a JSON object, "
                            f"got {type(manifest).__name__}")
        return manifest

    def list_versions(self, include_broken: bool = False) -> List[Dict[str, Any]]:
        """Manifests of all complete versions, oldest first (``active`` flag added). A version
        whose manifest cannot be read is skipped, or with ``include_broken`` listed as
        ``{"version", "active", "error"}``."""
        active = self.active_version()
        out = []
        for number in self._numbers():
            name = f"v{number:04d}"
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

    # --- activation ---------------------------------------------------------
    def active_version(self) -> Optional[str]:
        path = self.hooks_dir / ACTIVE_FILE
        try:
            name = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return name if VERSION_RE.match(name) else None

    def activate(self, version: str, *, reason: str = "activate", force: bool = False) -> Dict[str, Any]:
        """Point ACTIVE at ``version`` in one atomic step; refuses failed validation unless forced."""
        manifest = self.manifest(version)
        if manifest.get("validation", {}).get("ok") is False and not force:
            raise HookError(f"version {version} failed validation; activate(..., force=True) to override")
        return self._set_active(version, "activate", reason)

    def deactivate(self, *, reason: str = "deactivate") -> Dict[str, Any]:
        """No hooks active (ACTIVE removed)."""
        return self._set_active(None, "deactivate", reason)

    def rollback(self, to: Optional[str] = None, *, reason: str = "rollback") -> Optional[str]:
        """Go back to the previously active version (or to ``to``); return the now-active one."""
        with self._lock:
            stack = self._stack()
        if to is None:
            if len(stack) < 2:
                return self.active_version()
            target = stack[-2]
        else:
            self.manifest(to)  # must exist
            target = to
        self._set_active(target, "rollback", reason)
        return target

    def history(self) -> List[Dict[str, Any]]:
        path = self.hooks_dir / HISTORY_FILE
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash
        return entries

    def _stack(self) -> List[Optional[str]]:
        """Activation stack replayed from history: rollback pops back to its target."""
        stack: List[Optional[str]] = []
        for entry in self.history():
            version = entry.get("version")
            if entry.get("action") == "rollback" and version in stack:
                while stack and stack[-1] != version:
                    stack.pop()
            else:
                stack.append(version)
        return stack

    def _set_active(self, version: Optional[str], action: str, reason: str) -> Dict[str, Any]:
        with self._lock:
            previous = self.active_version()
            pointer = self.hooks_dir / ACTIVE_FILE
            if version is None:
                if pointer.exists():
                    pointer.unlink()
            else:
                write_atomic(pointer, version + "\n")
            entry = {"at": utc_now_iso(), "action": action, "version": version, "previous": previous, "reason": reason}
            fd = os.open(self.hooks_dir / HISTORY_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, (json.dumps(entry) + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        return entry
