"""The agent's kit download: a partial download resumes with an HTTP Range request, and a
download that does not match the kit's sha256 is thrown away, never installed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from sync_agent.kit_download import KitDownloadFailed, fetch_kit
from sync_server.schemas import UpdateOffer

from .conftest import RunningServer, import_kit


def _offer(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
) -> tuple[str, UpdateOffer]:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    with sync_server.admin() as admin:
        token = admin.post("/api/v1/tokens", {"name": "pc"})["token"]
    with sync_server.client(token) as client:
        computer = client.post("/api/v1/checkin", {"version": "4.5.0"})["computer_id"]
        assert sync_cli("assign", "5.0.0", "--computer", str(computer))[0] == 0
        offer = client.post("/api/v1/checkin", {"version": "4.5.0"})["update"]
    return token, UpdateOffer.model_validate(offer)


def test_partial_download_resumes_with_a_range_request(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    token, offer = _offer(sync_server, sync_cli, engine_medium)
    iso = engine_medium("5.0.0")
    cache = tmp_path / "cache"
    cache.mkdir()
    partial = cache / f"{offer.sha256}.partial"
    partial.write_bytes(iso.read_bytes()[: 3 * 1024 * 1024])
    with sync_server.client(token) as client:
        received = client.download(offer.download, partial)
        assert received == offer.size - 3 * 1024 * 1024
        kit = fetch_kit(client, offer, cache)
    assert kit.read_bytes() == iso.read_bytes()


def test_download_not_matching_the_sha256_is_removed(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    token, offer = _offer(sync_server, sync_cli, engine_medium)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{offer.sha256}.partial").write_bytes(b"\0" * 4096)  # not the kit's first bytes
    with sync_server.client(token) as client, pytest.raises(KitDownloadFailed) as failed:
        fetch_kit(client, offer, cache)
    assert "does not match the server's sha256" in failed.value.message
    assert [p.name for p in cache.iterdir()] == [f"{offer.sha256}.lock"]
    with sync_server.client(token) as client:
        assert fetch_kit(client, offer, cache).read_bytes() == engine_medium("5.0.0").read_bytes()
