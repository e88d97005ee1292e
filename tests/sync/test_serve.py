"""`engine-sync serve`: a port in use is one error line (exit 2) and leaves no data directory;
the API is documented at /openapi.json."""

from __future__ import annotations

from pathlib import Path

import httpx

from commands import engine_sync


def test_port_in_use_is_one_error_line(sync_server, tmp_path: Path, capsys) -> None:
    listen = sync_server.url.removeprefix("http://")
    data = tmp_path / "second"
    status = engine_sync.main(["serve", "--data", str(data), "--listen", listen])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines()[0] == f"error: --listen {listen}: the port is already in use"
    assert err.splitlines()[1].startswith("hint: ")
    assert not data.exists()


def test_openapi_document_lists_the_api(sync_server) -> None:
    doc = httpx.get(f"{sync_server.url}/openapi.json").json()
    for path in ("/api/v1/checkin", "/api/v1/kits/{kit_id}/assignments", "/api/v1/tasks"):
        assert path in doc["paths"]
