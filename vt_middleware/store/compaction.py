"""LanceDB compaction in a short-lived child process.

Batched appends leave one small fragment per write, and reads slow down with the fragment
count, so the table is compacted every ``COMPACT_EVERY_WRITES`` writes. Compacting inside
the app process left tens of MiB behind per run (glibc arena fragmentation from LanceDB's
worker threads; ``malloc_trim`` does not return it), so an app that runs for days grew
without bound. A child process returns all of it when it exits, and its CPU is not the
app's GIL. One child at a time, at most one start a minute (each pays ~2 s of imports);
a failed run is reported on the next start.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from typing import Any, Optional

from ..errors import StoreError
from ..health import fail_open

_COMPACT_SCRIPT = """
import sys
from datetime import timedelta
import lancedb
table = lancedb.connect(sys.argv[1]).open_table(sys.argv[2])
table.optimize(cleanup_older_than=timedelta(seconds=float(sys.argv[3])))
"""


class ChildCompactor:
    """Runs ``optimize`` on one LanceDB directory's tables in a child process."""

    def __init__(self, db_path: str, keep_old_versions: timedelta) -> None:
        self.db_path = db_path
        self.keep_old_versions = keep_old_versions
        self.runs = 0
        self._started_at = float("-inf")
        self._child: Optional[subprocess.Popen] = None
        self._errors: Any = None  # the running child's stderr file
        self._lock = threading.Lock()

    def start(self, table: str, min_interval_s: float = 0.0) -> bool:
        """Start compacting ``table``; False when a compaction is still running or the last
        one started less than ``min_interval_s`` ago."""
        with self._lock:
            if time.monotonic() - self._started_at < min_interval_s:
                return False
            if self._child is not None:
                if self._child.poll() is None:
                    return False
                finished, self._child = self._child, None
                self._report(finished, self._errors)
            errors = tempfile.TemporaryFile()  # noqa: SIM115 - not a pipe: a chatty child must never block on it
            self._child = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _COMPACT_SCRIPT,
                    self.db_path,
                    table,
                    str(self.keep_old_versions.total_seconds()),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
            self._errors = errors
            self._started_at = time.monotonic()
            self.runs += 1
            return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the running compaction (if any); True when none is left running."""
        with self._lock:
            child, errors = self._child, self._errors
        if child is None:
            return True
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False  # still ours: the next start() or wait() reaps it
        with self._lock:
            if self._child is child:
                self._child = None
                self._report(child, errors)
        return True

    @staticmethod
    def _report(child: subprocess.Popen, errors: Any) -> None:
        """Count a failed run (fail open: compaction is housekeeping, rows are safe)."""
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
        errors.close()
        if child.returncode:
            last = stderr.strip().splitlines()[-1:] or [f"exit status {child.returncode}"]
            with fail_open("store.compact"):
                raise StoreError(f"LanceDB compaction failed: {last[0]}")
