"""Simulated computers: the real check-in protocol over HTTP, with no disk. What happens on
each computer (how long a download, an install and a reboot take, whether one fails or the
new slot falls back at its first boot) is drawn from a seeded distribution, and time is a
simulated clock: a fleet of thousands runs through hours of check-ins in seconds, against the
same server as real computers (disk images), so one fleet mixes both. Simulated computers are
for load; real ones are the proof.

Determinism: each computer draws from its own generator seeded with (seed, index), and its
draws depend only on its own events and the server's answers, so a seed gives the same
outcome per computer however the concurrent requests interleave.

The clock advances from one batch of due events to the next; the events of one batch (every
event within `tick` simulated seconds) are sent concurrently on a bounded pool of threads,
each with one HTTP client (connection reuse) that sends each computer's own token.
"""

from __future__ import annotations

import enum
import heapq
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from disk_images.state import UpgradeStatus
from enginekit.errors import EngineKitError
from sync_server.client import SyncClient
from sync_server.schemas import CheckinRequest, CheckinResponse, UpdateOffer


@dataclass(frozen=True)
class Outcomes:
    """The distribution a simulated computer's upgrade is drawn from (probabilities, and
    durations in simulated seconds as uniform ranges)."""

    download_failure: float = 0.01
    install_failure: float = 0.01
    boot_fallback: float = 0.02
    download_seconds: tuple[float, float] = (30.0, 300.0)
    install_seconds: tuple[float, float] = (60.0, 180.0)
    reboot_seconds: tuple[float, float] = (30.0, 120.0)


@dataclass(frozen=True)
class FleetOptions:
    count: int
    seed: int
    engine: str = "4.5.0"
    outcomes: Outcomes = Outcomes()
    reboot: bool = True  # reboot once installed (as `engine-disk agent --reboot`)
    interval: float | None = None  # None: what the server asks for at check-in
    concurrency: int = 8
    tick: float = 1.0
    name_prefix: str = "sim"


class Event(enum.StrEnum):
    CHECK_IN = "check-in"
    DOWNLOADED = "downloaded"
    INSTALLED = "installed"
    BOOTED = "booted"


@dataclass
class SimulatedComputer:
    """One computer's state, as its disk would hold it."""

    index: int
    name: str
    token: str = field(repr=False)
    version: str
    rng: random.Random = field(repr=False)
    active_slot: str = "A"
    slots: dict[str, str | None] = field(default_factory=dict)
    upgrade_status: UpgradeStatus = UpgradeStatus.BLANK
    computer_id: int | None = None
    offer: UpdateOffer | None = None  # the kit being downloaded/installed/booted
    busy: bool = False
    last_report: str = ""  # the Upgrade status this computer last reported
    checkins: int = 0
    reports: int = 0  # status reports sent
    errors: int = 0

    @property
    def inactive_slot(self) -> str:
        return "B" if self.active_slot == "A" else "A"

    def checkin_request(self) -> CheckinRequest:
        return CheckinRequest(
            disk_id=f"{self.name}-disk",
            version=self.version,
            active_slot=self.active_slot,
            slots=dict(self.slots),
            upgrade_status=self.upgrade_status.value,
        )


@dataclass(frozen=True)
class FleetSummary:
    simulated_seconds: float
    checkins: int
    errors: int
    versions: dict[str, int]  # running version -> computers
    reports: dict[str, int]  # the last Upgrade status each computer reported -> computers
    outcome: dict[str, tuple[str, str]]  # name -> (running version, last report)

    def lines(self) -> list[str]:
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(self.versions.items()))
        reports = ", ".join(
            f"{UpgradeStatus(s).label}: {n}" for s, n in sorted(self.reports.items())
        )
        return [
            f"{sum(self.versions.values())} simulated computers, {self.checkins} check-ins, "
            f"{self.errors} errors over {self.simulated_seconds:.0f} simulated seconds",
            f"running: {versions}",
            f"last reported Upgrade status: {reports or '-'}",
        ]


Due = tuple[float, Event]


class SimulatedFleet:
    """`count` simulated computers checking in to `server`; `run_for` advances the clock."""

    def __init__(self, server: str, admin_token: str, options: FleetOptions) -> None:
        self.server = server
        self.options = options
        self.now = 0.0
        self._admin_token = admin_token
        self._local = threading.local()
        self._clients: list[SyncClient] = []
        self._clients_lock = threading.Lock()
        self._queue: list[tuple[float, int, int, Event]] = []
        self._seq = 0
        self.computers: list[SimulatedComputer] = []
        names = [f"{options.name_prefix}-{index:05d}" for index in range(options.count)]
        # Enrolment tokens on the fleet's pool of clients (10,000 one after the other take
        # minutes); the computers still come in index order.
        with ThreadPoolExecutor(max_workers=max(1, options.concurrency)) as pool:
            tokens = list(pool.map(self._enrolment_token, names))
        self.close()  # the pool's threads are gone; run_for makes its own clients
        for index, (name, token) in enumerate(zip(names, tokens, strict=True)):
            rng = random.Random(f"{options.seed}:{index}")
            computer = SimulatedComputer(
                index, name, token, options.engine, rng, slots={"A": options.engine}
            )
            self.computers.append(computer)
            first = rng.uniform(0.0, self._interval(None))
            self._push(first, index, Event.CHECK_IN)

    def _enrolment_token(self, name: str) -> str:
        return str(self._client().post("/api/v1/tokens", {"name": name})["token"])

    # --- the clock ------------------------------------------------------------------

    def _push(self, when: float, index: int, event: Event) -> None:
        heapq.heappush(self._queue, (when, self._seq, index, event))
        self._seq += 1

    def _interval(self, asked: float | None) -> float:
        return self.options.interval or asked or 60.0

    def run_for(self, seconds: float, stop: threading.Event | None = None) -> FleetSummary:
        """Advance the simulated clock by `seconds`, sending every event that falls due."""
        end = self.now + seconds
        with ThreadPoolExecutor(
            max_workers=max(1, self.options.concurrency), thread_name_prefix="simulated"
        ) as pool:
            while self._queue and self._queue[0][0] <= end:
                if stop is not None and stop.is_set():
                    break
                start = self._queue[0][0]
                batch = []
                while self._queue and self._queue[0][0] <= min(start + self.options.tick, end):
                    batch.append(heapq.heappop(self._queue))
                self.now = max(self.now, batch[-1][0])
                # One computer's events of a batch run in order on one thread; computers
                # run side by side. New events go in in computer order, so a seed always
                # gives the same queue.
                groups: dict[int, list[tuple[float, int, int, Event]]] = {}
                for item in batch:
                    groups.setdefault(item[2], []).append(item)
                ordered = [groups[index] for index in sorted(groups)]
                for due in pool.map(self._handle_all, ordered):
                    for when, index, event in due:
                        self._push(when, index, event)
        self.now = max(self.now, end)
        return self.summary()

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    def __enter__(self) -> SimulatedFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def summary(self) -> FleetSummary:
        return FleetSummary(
            simulated_seconds=self.now,
            checkins=sum(c.checkins for c in self.computers),
            errors=sum(c.errors for c in self.computers),
            versions=dict(Counter(c.version for c in self.computers)),
            reports=dict(Counter(c.last_report for c in self.computers)),
            outcome={c.name: (c.version, c.last_report) for c in self.computers},
        )

    # --- one computer's events --------------------------------------------------------

    def _client(self) -> SyncClient:
        client: SyncClient | None = getattr(self._local, "client", None)
        if client is None:
            client = SyncClient(self.server, self._admin_token)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _call(self, computer: SimulatedComputer, path: str, body: dict[str, Any]) -> Any:
        auth = {"Authorization": f"Bearer {computer.token}"}
        return self._client().request("POST", path, json=body, headers=auth)

    def _handle_all(
        self, items: list[tuple[float, int, int, Event]]
    ) -> list[tuple[float, int, Event]]:
        return [due for item in items for due in self._handle(item)]

    def _handle(self, item: tuple[float, int, int, Event]) -> list[tuple[float, int, Event]]:
        when, _, index, event = item
        computer = self.computers[index]
        try:
            due = self._step(computer, when, event)
        except EngineKitError:
            # A refusal or an unreachable server: the computer tries again at its next
            # check-in, as the real agent does.
            computer.errors += 1
            computer.busy = False
            due = [(when + self._interval(None), Event.CHECK_IN)]
        return [(w, index, e) for w, e in due]

    def _report(self, computer: SimulatedComputer, status: UpgradeStatus, detail: str) -> None:
        assert computer.offer is not None
        self._call(
            computer,
            f"/api/v1/assignments/{computer.offer.assignment_id}/status",
            {"status": status.value, "detail": detail},
        )
        computer.last_report = status.value
        computer.reports += 1

    def _draw(self, computer: SimulatedComputer, span: tuple[float, float]) -> float:
        return computer.rng.uniform(*span)

    def _step(self, computer: SimulatedComputer, when: float, event: Event) -> list[Due]:
        outcomes = self.options.outcomes
        if event is Event.CHECK_IN:
            return self._check_in(computer, when)
        offer = computer.offer
        assert offer is not None
        if event is Event.DOWNLOADED:
            if computer.rng.random() < outcomes.download_failure:
                self._fail(computer, "simulated: the download broke off and did not match")
                return []
            return [(when + self._draw(computer, outcomes.install_seconds), Event.INSTALLED)]
        if event is Event.INSTALLED:
            if computer.rng.random() < outcomes.install_failure:
                self._fail(computer, "simulated: the install into the inactive slot failed")
                return []
            slot = computer.inactive_slot
            computer.slots[slot] = offer.version
            computer.upgrade_status = UpgradeStatus.INSTALLED_REBOOT_REQUIRED
            self._report(computer, UpgradeStatus.INSTALLED_REBOOT_REQUIRED, f"slot {slot}")
            if not self.options.reboot:
                computer.busy = False
                return []
            return [(when + self._draw(computer, outcomes.reboot_seconds), Event.BOOTED)]
        # Event.BOOTED
        computer.busy = False
        if computer.rng.random() < outcomes.boot_fallback:
            computer.upgrade_status = UpgradeStatus.BLANK
            self._fail(computer, f"reverted to {computer.version} after a failed boot")
        else:
            computer.active_slot = computer.inactive_slot
            computer.version = offer.version
            computer.upgrade_status = UpgradeStatus.BLANK
            self._report(computer, UpgradeStatus.BLANK, f"running in slot {computer.active_slot}")
        computer.offer = None
        # Check in again at once, so the console shows what the computer now runs.
        return [(when, Event.CHECK_IN)]

    def _fail(self, computer: SimulatedComputer, detail: str) -> None:
        computer.busy = False
        if computer.upgrade_status is not UpgradeStatus.BLANK:
            computer.upgrade_status = UpgradeStatus.FAILED
        self._report(computer, UpgradeStatus.FAILED, detail)
        computer.offer = None

    def _check_in(self, computer: SimulatedComputer, when: float) -> list[Due]:
        body = computer.checkin_request().model_dump()
        answer = CheckinResponse.model_validate(self._call(computer, "/api/v1/checkin", body))
        computer.checkins += 1
        computer.computer_id = answer.computer_id
        interval = self._interval(answer.checkin_interval)
        due: list[Due] = [(when + interval * computer.rng.uniform(0.9, 1.1), Event.CHECK_IN)]
        offer = answer.update
        if offer is None or computer.busy:
            return due
        if offer.status == UpgradeStatus.SIGNALLED:
            computer.offer, computer.busy = offer, True
            computer.last_report = UpgradeStatus.SIGNALLED.value
            span = self.options.outcomes.download_seconds
            due.append((when + self._draw(computer, span), Event.DOWNLOADED))
        return due


def run_fleet(
    server: str,
    admin_token: str,
    options: FleetOptions,
    seconds: float,
    progress: Callable[[FleetSummary], None] | None = None,
) -> FleetSummary:
    """Make the fleet and run it for `seconds` simulated seconds (`engine-sync simulate`)."""
    with SimulatedFleet(server, admin_token, options) as fleet:
        summary = fleet.run_for(seconds)
        if progress is not None:
            progress(summary)
        return summary
