"""The web UI (`python -m streams ui`): Leek's task and worker views over ClickHouse, read-only.

``server`` (bind, auth checks, uvicorn), ``app`` (Starlette routes and pages), ``queries`` (every
SQL, parameterised), ``db`` (the ClickHouse pool with time and row limits), and pure helpers:
``badges`` (state badges and tags), ``attempts`` (a task's events by attempt), ``workflow``
(the canvas graph), ``charts`` (Analytics specs).
"""
