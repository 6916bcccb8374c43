"""Charity Engine Remote API: the client the bridge uses and the emulator it is tested against.

- :mod:`bridge.remote.convention` holds every assumption about CE's API that is not public
  (paths, field names, status names, the ``Idempotency-Key`` header), so a change in CE's
  specification is a one-file change.
- :mod:`bridge.remote.client` is the synchronous, retrying HTTP client (:class:`CEClient`).
- :mod:`bridge.remote.emulator` is a FastAPI app that serves the same convention, with
  configurable timings and fault injection; :mod:`bridge.remote.server` runs it with uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.remote.convention import (
    DEFAULT_BASE_URL,
    CEJobRequest,
    CEStatus,
    OutputFile,
    RemoteJobStatus,
    idempotency_key,
    is_success,
    is_terminal,
)

if TYPE_CHECKING:
    from bridge.remote.client import CEClient


def __getattr__(name: str) -> Any:
    # The client (urllib3) is loaded on first use, so the pure convention imports light.
    if name == "CEClient":
        from bridge.remote.client import CEClient

        return CEClient
    raise AttributeError(f"module 'bridge.remote' has no attribute {name!r}")


__all__ = [
    "DEFAULT_BASE_URL",
    "CEClient",
    "CEJobRequest",
    "CEStatus",
    "OutputFile",
    "RemoteJobStatus",
    "idempotency_key",
    "is_success",
    "is_terminal",
]
