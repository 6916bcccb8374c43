"""The bridge's HTTP API (FastAPI): health, readiness, metrics, jobs, outputs and admin.

``create_app(settings, bridge)`` builds it; ``serve_api_in_thread(app, host, port)`` serves it
next to the bridge's loops. Routers: ``health``, ``jobs``, ``admin``, ``metrics``; what they call
is in ``services`` (no FastAPI there), their shapes in ``schemas``, their dependencies in
``deps``, the Prometheus registry in ``telemetry``.
"""

from bridge.api.app import ApiServer, create_app, serve_api_in_thread

__all__ = ["ApiServer", "create_app", "serve_api_in_thread"]
