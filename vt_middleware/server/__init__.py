"""The local OpenAI-compatible server (FastAPI): chat completions (+SSE), models,
files and fine-tuning jobs, backed by local models.

    from vt_middleware.server.runner import LocalServer
    with LocalServer(model="vt-tiny-random") as server: ...
"""
