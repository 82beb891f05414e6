"""The hooks folder: where each version's module lives, and the pointer files derived from the
promotion record.

Layout of ``hooks_dir``::

    v0001/hook.py          generated module (read-only once the manifest exists)
    v0001/manifest.json    version, created_at, rule_count, source_pairs, validation, rules
    ACTIVE                 the live version's name (derived from the promotion record)
    history.jsonl          one line per change of what is live (derived, for people and tools)

The promotion record in the store says what is live; ``ACTIVE`` and ``history.jsonl`` are
written from it after each change and read only as a start-up cache (see ``runtime/sync.py``).
Writing new versions is the synthesis stage's job (``synthesize/versions.py``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..errors import ConfigError, HookError

VERSION_RE = re.compile(r"^v(\d{4,})$")
HOOK_FILE = "hook.py"
MANIFEST_FILE = "manifest.json"
ACTIVE_FILE = "ACTIVE"
HISTORY_FILE = "history.jsonl"


def write_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (fsync'd if ``durable``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class HookDir:
    """Read access to the versions under ``hooks_dir`` and the derived pointer files."""

    def __init__(self, hooks_dir: str | os.PathLike) -> None:
        self.hooks_dir = Path(hooks_dir)
        self._pointer_lock = threading.Lock()

    def folder(self, version: str) -> Path:
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise ConfigError(f"not a hook version name: {version!r} (expected like 'v0001')")
        return self.hooks_dir / version

    def hook_path(self, version: str) -> Path:
        return self.folder(version) / HOOK_FILE

    def manifest(self, version: str) -> Dict[str, Any]:
        path = self.folder(version) / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HookError(f"hook version {version} does not exist in {self.hooks_dir}") from None
        except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise HookError(
                f"hook version {version} has a broken manifest {path}: {exc}; it cannot be "
                f"activated (restore the file or delete the folder {path.parent})"
            ) from exc
        if not isinstance(manifest, dict):
            raise HookError(
                f"hook version {version} has a broken manifest {path}: expected a JSON object, "
                f"got {type(manifest).__name__}"
            )
        return manifest

    def version_names(self) -> List[str]:
        """Names of the version folders, oldest first (complete or not)."""
        try:
            entries = list(self.hooks_dir.iterdir())
        except FileNotFoundError:
            return []
        numbered = [(int(m.group(1)), e.name) for e in entries if (m := VERSION_RE.match(e.name)) and e.is_dir()]
        return [name for _, name in sorted(numbered)]

    def validated(self, version: str) -> bool:
        """True when ``version``'s manifest records a passed validation."""
        try:
            return (self.manifest(version).get("validation") or {}).get("ok") is True
        except (HookError, ConfigError):
            return False

    def fallbacks(self, version: Optional[str]) -> List[str]:
        """Versions to serve when ``version`` cannot be: the validated ones older than it
        (all validated ones for a name that is not a version), newest first."""
        match = VERSION_RE.match(version or "")
        limit = int(match.group(1)) if match else None
        names = [n for n in self.version_names() if limit is None or int(n[1:]) < limit]
        return [n for n in reversed(names) if self.validated(n)]

    # --- derived pointer files ----------------------------------------------------------
    def active_version(self) -> Optional[str]:
        """The version named in ``ACTIVE`` (derived from the promotion record), or None."""
        try:
            name = (self.hooks_dir / ACTIVE_FILE).read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return name if VERSION_RE.match(name) else None

    def history(self) -> List[Dict[str, Any]]:
        """The lines of ``history.jsonl`` (a torn last line after a crash is skipped)."""
        try:
            lines = (self.hooks_dir / HISTORY_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
        return entries

    def write_pointer(self, version: Optional[str], entry: Dict[str, Any]) -> None:
        """Make ``ACTIVE`` name ``version`` (removed for None) and append ``entry`` to the history."""
        with self._pointer_lock:
            self.hooks_dir.mkdir(parents=True, exist_ok=True)
            pointer = self.hooks_dir / ACTIVE_FILE
            if version is None:
                pointer.unlink(missing_ok=True)
            else:
                write_atomic(pointer, version + "\n", durable=False)
            fd = os.open(self.hooks_dir / HISTORY_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, (json.dumps(entry, default=str) + "\n").encode("utf-8"))
            finally:
                os.close(fd)
