"""Simultaneous first check-ins of one computer (the agent retried while its first request was
still in flight, or two agent processes on one disk) enrol exactly one computer, and every
caller gets a successful answer naming it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sync_server.client import ApiRefused, SyncClient
from tests.sync.conftest import ON_BOTH_DATABASES, RunningServer

ROUNDS, CALLERS = 3, 8


def _first_checkins(server: RunningServer, token: str, disk_id: str) -> list[int]:
    """CALLERS first check-ins with `token`, each on an open connection, released together."""
    barrier = threading.Barrier(CALLERS)

    def check_in(_: int) -> int:
        with SyncClient(server.url, token) as client:
            try:  # open the connection first, so the check-ins leave at the same moment
                client.get("/api/v1/tokens")
            except ApiRefused:
                pass
            barrier.wait()
            answer = client.post("/api/v1/checkin", {"version": "4.5.0", "disk_id": disk_id})
            return int(answer["computer_id"])

    with ThreadPoolExecutor(CALLERS) as pool:
        return list(pool.map(check_in, range(CALLERS)))


@ON_BOTH_DATABASES
def test_simultaneous_first_checkins_enrol_one_computer(sync_server: RunningServer) -> None:
    admin = sync_server.admin()
    for round_ in range(ROUNDS):
        token = admin.post("/api/v1/tokens", {"name": f"pc{round_}"})["token"]
        ids = _first_checkins(sync_server, token, f"disk-{round_}")
        assert len(set(ids)) == 1, ids
    computers = admin.get("/api/v1/computers")
    assert sorted(c["name"] for c in computers) == [f"pc{r}" for r in range(ROUNDS)]
