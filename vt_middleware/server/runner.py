"""Running the local server: ``LocalServer`` (a thread, for tests and demos) and
``serve`` (blocking, for ``vt serve``). ``ThreadedServer`` runs any ASGI app the same way
(the management API in tests and benchmarks)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from ..errors import VTError
from .backends import ChatBackend, LocalModelBackend

if TYPE_CHECKING:
    from .limits import ServerLimits

DEFAULT_DATA_DIR = Path(".vt/server")


class ThreadedServer:
    """uvicorn serving ``app`` in a background thread on ``host:port`` (port 0: a free one)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        import uvicorn

        if self._thread is not None:
            return self
        config = uvicorn.Config(
            self.app, host=self.host, port=self.port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="vt-local-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise VTError(f"server failed to start on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                raise VTError(f"server did not start within {timeout}s")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        self._server = None

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


class LocalServer(ThreadedServer):
    """The local OpenAI-compatible server in a background thread.

    with LocalServer(model="vt-tiny-random") as server:
        OpenAI(base_url=server.base_url, api_key="local").chat.completions.create(...)
    """

    def __init__(
        self,
        backend: Optional[ChatBackend] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Union[str, Path] = DEFAULT_DATA_DIR,
        model: Optional[str] = None,
        limits: Optional[ServerLimits] = None,
    ) -> None:
        from .app import create_app

        self.backend = backend if backend is not None else LocalModelBackend(default_model=model)
        self.data_dir = Path(data_dir)
        super().__init__(create_app(self.backend, self.data_dir, limits), host, port)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def __enter__(self) -> LocalServer:
        self.start()
        return self


SHUTDOWN_GRACE_S = 5.0


def _server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        """On SIGTERM/SIGINT: stop every running generation, then uvicorn's own shutdown
        (open connections get ``SHUTDOWN_GRACE_S``)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            from .limits import cancel_all

            cancel_all("server shutting down")
            super().handle_exit(sig, frame)

    return _Server


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: Optional[str] = None,
    data_dir: Union[str, Path] = DEFAULT_DATA_DIR,
    limits: Optional[ServerLimits] = None,
) -> None:
    """Serve a local model over OpenAI's API until interrupted (``vt serve``); SIGTERM stops
    it within seconds, generation included."""
    import uvicorn

    from .app import create_app

    backend = LocalModelBackend(default_model=model)
    print(
        f"vt_middleware local server: http://{host}:{port}/v1  models: {', '.join(backend.list_models())}", flush=True
    )
    config = uvicorn.Config(
        create_app(backend, data_dir, limits),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    try:
        _server_class()(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown (as uvicorn.run does, done)
        pass
