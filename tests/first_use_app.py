"""A fresh process whose threads all touch vt_middleware for the first time at once:
capture (``@vt.track``), ``vt.get_store()``, ``vt.feedback`` and ``vt.flush``. Prints one
JSON line: errors seen by the threads, internal errors, rows and feedback stored."""

from __future__ import annotations

import json
import sys
import threading

import vt_middleware as vt

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 12
barrier = threading.Barrier(THREADS)
errors: list = []
ids: list = []
lock = threading.Lock()


@vt.track(function_name="first_use")
def answer(i: int) -> str:
    return f"answer {i}"


def thread_main(i: int) -> None:
    try:
        barrier.wait()
        kind = i % 4
        if kind == 0:
            vt.get_store().count()
        answer(i)
        run_id = vt.last_run_id()
        with lock:
            ids.append(run_id)
        if kind == 1:  # a generous flush first: a loaded machine imports VectorWave slowly
            if not vt.flush(300):
                raise TimeoutError("flush(300) did not drain")
            vt.feedback(run_id, fixed_output=f"fixed {i}")
        elif kind == 2:
            vt.flush(60)
        elif kind == 3:
            vt.capture_stats()
    except BaseException as exc:
        with lock:
            errors.append(f"{type(exc).__name__}: {exc}")


threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(THREADS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
flushed = vt.flush(300)
stored = {c.uuid for page in vt.get_store().iter_calls("first_use") for c in page}
print(
    json.dumps(
        {
            "errors": errors,
            "internal": vt.error_counts(),
            "flushed": flushed,
            "ids": len(ids),
            "stored": len(stored & set(ids)),
            "feedback": len(vt.get_store().list_feedback("first_use")),
        }
    )
)
