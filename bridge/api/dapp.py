"""The dapp: ``/app/`` serves the page built in ``dapp/dist/``; ``/app/config.json``, its settings.

``/app/config.json`` tells the page which chain and contract to use, where to read the chain
(``BRIDGE_DAPP_RPC_URL``; never ``BRIDGE_RPC_URL``, which may carry a provider's key: without a
public URL the page reads through the user's wallet) and where this bridge's API is
(``BRIDGE_PUBLIC_URL``, else the address the request came to). The page itself is static: the
same files, with a ``config.json`` beside them, work on any host (``node dapp/build.mjs --out
DIR --config FILE``).

Guarantees: only files under the build directory are served (no ``..``, no symlink out of it);
``/app/`` answers 503 with the command to run when the dapp has not been built.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse
from sqlmodel import Field, SQLModel
from web3 import Web3

from bridge.api.deps import ServicesDep
from bridge.chain.artifacts import REPO_ROOT
from bridge.chain.reader import find_deployment_block

#: Where ``node dapp/build.mjs`` writes the page (scripts/setup runs it).
DAPP_DIST = REPO_ROOT / "dapp" / "dist"

router = APIRouter(tags=["dapp"])

_from_block_lock = threading.Lock()
_NO_CACHE = {"Cache-Control": "no-cache"}


class DappConfig(SQLModel):
    """``GET /app/config.json``: what the page needs to find the chain, the contract and the API."""

    chainId: int | None = Field(description="the chain the contract is on (EIP-155 id)")  # noqa: N815
    rpcUrl: str | None = Field(  # noqa: N815
        description="a public JSON-RPC URL for reads; null: read through the wallet"
    )
    contract: str = Field(description="checksum address of the JobEscrow")
    apiUrl: str = Field(description="base URL of this bridge's HTTP API")  # noqa: N815
    fromBlock: int = Field(description="first block to search for the contract's events")  # noqa: N815
    explorerUrl: str | None = Field(  # noqa: N815
        description="block explorer base URL (links are {explorerUrl}/tx/{hash})"
    )


@router.get("/app/config.json", response_model=DappConfig, summary="The dapp's settings")
def dapp_config(services: ServicesDep, request: Request) -> DappConfig:
    """The chain id, read RPC URL, contract, API URL, first block and explorer of this bridge."""
    settings = services.settings
    bridge = services.bridge
    api_url = settings.public_url or str(request.base_url)
    return DappConfig(
        chainId=bridge.chain_id if bridge is not None else None,
        rpcUrl=settings.dapp_rpc_url,
        contract=Web3.to_checksum_address(settings.contract_address),
        apiUrl=api_url.rstrip("/"),
        fromBlock=_from_block(request),
        explorerUrl=settings.dapp_explorer_url.rstrip("/") if settings.dapp_explorer_url else None,
    )


def _from_block(request: Request) -> int:
    """``BRIDGE_START_BLOCK``, else the contract's deployment block (found once, then cached)."""
    services = request.app.state.services
    if services.settings.start_block is not None:
        return int(services.settings.start_block)
    with _from_block_lock:
        cached = getattr(request.app.state, "dapp_from_block", None)
        if cached is None:
            cached = 0
            if services.bridge is not None:
                address = Web3.to_checksum_address(services.settings.contract_address)
                cached = find_deployment_block(services.bridge.w3, address)
            request.app.state.dapp_from_block = cached
    return int(cached)


@router.get("/app", include_in_schema=False)
def dapp_redirect() -> RedirectResponse:
    """``/app`` -> ``/app/``, so the page's relative URLs resolve."""
    return RedirectResponse("/app/", status_code=status.HTTP_308_PERMANENT_REDIRECT)


@router.get("/app/", include_in_schema=False)
def dapp_index() -> FileResponse:
    """The page."""
    return _file("index.html")


@router.get("/app/{name:path}", include_in_schema=False)
def dapp_file(name: Annotated[str, PathParam(min_length=1)]) -> FileResponse:
    """One file of the built page (scripts, styles)."""
    return _file(name)


def _file(name: str, dist: Path = DAPP_DIST) -> FileResponse:
    if not (dist / "index.html").is_file():
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the dapp is not built: run scripts/setup (or node dapp/build.mjs)",
        )
    root = dist.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such file in the dapp: {name}")
    return FileResponse(path, headers=_NO_CACHE)
