"""The API for browsers: CORS on the public GET routes only, and the dapp's routes.

``create_app`` over a SQLite file through FastAPI's TestClient (no chain needed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from bridge.api import create_app
from bridge.config import Settings
from bridge.errors import ConfigError
from bridge.store.db import open_database
from tests.unit.test_api import ADMIN, CONTRACT, make_settings, seed

DAPP = "http://dapp.example:5173"
OTHER = "https://evil.example"


@pytest.fixture
def cors_settings(tmp_path: Path) -> Settings:
    return make_settings(
        tmp_path,
        cors_origins=f"{DAPP}, https://second.example",
        dapp_rpc_url="https://rpc.example/public",
    )


@pytest.fixture
def client(cors_settings: Settings) -> Iterator[TestClient]:
    db: Engine = open_database(cors_settings.database_url)
    seed(db)
    with TestClient(create_app(cors_settings, db=db)) as test_client:
        yield test_client
    db.dispose()


@pytest.mark.parametrize(
    "path",
    ["/jobs", "/jobs/1", "/jobs/1/outputs/", "/jobs/1/outputs/out.txt", "/healthz", "/jobs/999"],
)
def test_an_allowed_origin_may_read_the_public_routes(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"Origin": DAPP})
    assert response.headers["access-control-allow-origin"] == DAPP
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers


def test_an_output_file_is_readable_cross_origin_with_its_etag(client: TestClient) -> None:
    response = client.get("/jobs/1/outputs/out.txt", headers={"Origin": "https://second.example"})
    assert response.status_code == 200
    assert response.content == b"4\n"
    assert response.headers["access-control-allow-origin"] == "https://second.example"
    assert "ETag" in response.headers["access-control-expose-headers"]


def test_other_origins_get_no_cors_header(client: TestClient) -> None:
    for origin in (OTHER, DAPP + "/", "http://dapp.example"):
        response = client.get("/jobs", headers={"Origin": origin})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers, origin


def test_admin_routes_never_answer_cors(client: TestClient) -> None:
    posted = client.post("/admin/pause", headers={"Origin": DAPP, **ADMIN})
    assert "access-control-allow-origin" not in posted.headers
    for path in ("/admin/pause", "/admin/jobs/1/fail"):
        preflight = client.options(
            path,
            headers={
                "Origin": DAPP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert "access-control-allow-origin" not in preflight.headers, path


def test_a_preflight_allows_reads_only(client: TestClient) -> None:
    read = client.options(
        "/jobs/1", headers={"Origin": DAPP, "Access-Control-Request-Method": "GET"}
    )
    assert read.headers["access-control-allow-origin"] == DAPP
    assert read.headers["access-control-allow-methods"] == "GET, HEAD"
    write = client.options(
        "/jobs/1", headers={"Origin": DAPP, "Access-Control-Request-Method": "DELETE"}
    )
    assert "access-control-allow-origin" not in write.headers


def test_no_origins_configured_means_no_cors(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as plain:
        response = plain.get("/jobs", headers={"Origin": DAPP})
    assert "access-control-allow-origin" not in response.headers


def test_a_bad_origin_setting_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"BRIDGE_CORS_ORIGINS.*not an origin"):
        make_settings(tmp_path, cors_origins="https://ok.example, https://x.example/path")


def test_dapp_config_names_chain_contract_and_api(client: TestClient) -> None:
    config = client.get("/app/config.json").json()
    assert config["contract"].lower() == CONTRACT.lower()
    assert config["rpcUrl"] == "https://rpc.example/public"
    assert config["apiUrl"] == "http://testserver"
    assert config["chainId"] is None  # no bridge in this process: the page asks the wallet
    assert config["fromBlock"] == 0


def test_dapp_config_never_shows_the_operator_rpc_url(tmp_path: Path) -> None:
    secret_rpc = "https://user:pass@rpc.example/v3/secret-key-123"
    settings = make_settings(tmp_path, rpc_url=secret_rpc)
    with TestClient(create_app(settings)) as plain:
        text = plain.get("/app/config.json").text
    assert "secret-key-123" not in text and "pass@" not in text


def test_the_page_is_served_at_app(client: TestClient) -> None:
    from bridge.api.dapp import DAPP_DIST

    if not (DAPP_DIST / "index.html").is_file():
        pytest.skip("the dapp is not built (scripts/setup builds it)")
    page = client.get("/app/")
    assert page.status_code == 200
    assert 'data-testid="connect"' in page.text
    assert client.get("/app/app.js").status_code == 200
    assert client.get("/app", follow_redirects=False).headers["location"] == "/app/"
    assert client.get("/app/../pyproject.toml").status_code == 404
    assert client.get("/app/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
