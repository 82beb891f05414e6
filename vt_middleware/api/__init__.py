"""The management API (FastAPI): feedback, calls, runs, golden data, rules, hooks, promotions,
cost. ``vt api`` serves it; :func:`vt_middleware.api.app.create_app` builds it. The service
functions it calls (:mod:`.service`, :mod:`.runs`) are the dashboards' and the CLI's too.
Importing this package is light: FastAPI loads with :mod:`.app`."""
