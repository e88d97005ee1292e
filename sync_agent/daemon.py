"""The update daemon of one registered computer, and several of them side by side.

One cycle (`check_in_once`): read the disk (read-only), check in with its version, slots,
status and VMs; when the server names an assigned kit that is Signalled, download it, install
it into the inactive slot and report "Installed (Reboot Required)"; with `reboot`, boot the
disk and report Blank (the new version runs) or Failed (it fell back); a boot stopped by its
timeout proves nothing and is tried again at the next cycle. A refused token stops
the cycle before anything on the disk is touched. A disk in use is reported and left for the
next cycle. `run_agents` runs the cycles of several disks on a bounded pool, once or every
`interval` seconds (with jitter, so a fleet does not check in in lockstep).
"""

from __future__ import annotations

import enum
import logging
import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from disk_images.boot import boot_installed_disk
from disk_images.lock import DiskInUse
from disk_images.probe import Installation, in_use_by
from disk_images.state import UpgradeStatus
from enginekit.errors import EngineKitError
from sync_agent.install import install_kit
from sync_agent.kit_download import fetch_kit
from sync_agent.registration import ComputerIdentity, read_identity
from sync_agent.vm_deploy import deploy_vms
from sync_server.client import ApiRefused, SyncClient
from sync_server.schemas import CheckinRequest, CheckinResponse, UpdateOffer, VmDoc

log = logging.getLogger(__name__)
Say = Callable[[str], None]


class CycleResult(enum.StrEnum):
    OK = "ok"  # checked in; whatever was assigned went as far as it could
    FAILED = "failed"  # the upgrade failed (reported to the server)
    BUSY = "busy"  # the disk was in use; try again later
    REFUSED = "refused"  # the server refused the token, or the disk is not registered


@dataclass(frozen=True)
class AgentOptions:
    cache: Path
    reboot: bool = False
    boot_timeout: float = 120.0
    restart_vms: bool = False  # the VMs restart, so downloaded VM versions start running


def checkin_request(
    installed: Installation, vm_failures: dict[str, str] | None = None
) -> CheckinRequest:
    return CheckinRequest(
        disk_id=installed.disk_id,
        version=installed.version,
        active_slot=installed.active_slot.value if installed.active_slot else None,
        slots={slot.value: version for slot, version in installed.slots.items()},
        upgrade_status=installed.upgrade_status.value,
        vms=[
            VmDoc(
                name=vm.name,
                kind=vm.kind,
                pv_drivers=vm.pv_drivers,
                published_for=vm.published_for,
                image_version=vm.image_version,
                pending_version=vm.pending_version,
            )
            for vm in installed.vms
        ],
        vm_failures=vm_failures or {},
    )


class ComputerAgent:
    """One computer's daemon; `check_in_once` is one cycle."""

    def __init__(self, disk: Path, options: AgentOptions, say: Say) -> None:
        self.disk = disk
        self.options = options
        self._say = say
        self.interval: float | None = None  # what the server last asked for

    def say(self, text: str) -> None:
        self._say(f"{self.disk}: {text}")

    def check_in_once(self) -> CycleResult:
        try:
            identity = read_identity(self.disk)
            if identity.installation.in_use_by:
                raise DiskInUse(
                    f"{self.disk}: in use by {', '.join(identity.installation.in_use_by)}"
                )
            with SyncClient(identity.server, identity.token) as client:
                return self._cycle(identity, client)
        except DiskInUse as exc:
            self.say(f"{exc.message}; retried at the next check-in")
            return CycleResult.BUSY
        except ApiRefused as exc:
            if exc.status in (401, 403):
                self.say(f"{exc.message}; nothing on the disk was changed")
                return CycleResult.REFUSED
            self.say(exc.message)
            return CycleResult.FAILED
        except EngineKitError as exc:
            self.say(f"error: {exc.message}")
            return CycleResult.REFUSED if exc.exit_status == 2 else CycleResult.FAILED

    def _check_in(
        self,
        client: SyncClient,
        installed: Installation,
        vm_failures: dict[str, str] | None = None,
    ) -> CheckinResponse:
        body = checkin_request(installed, vm_failures).model_dump()
        answer = CheckinResponse.model_validate(client.post("/api/v1/checkin", body))
        self.interval = answer.checkin_interval
        status = installed.upgrade_status.label
        self.say(
            f"checked in as computer {answer.computer_id}: Engine {installed.version}, "
            f"status {status}"
        )
        return answer

    def _report(
        self, client: SyncClient, offer: UpdateOffer, status: UpgradeStatus, detail: str
    ) -> None:
        client.post(
            f"/api/v1/assignments/{offer.assignment_id}/status",
            {"status": status.value, "detail": detail},
        )
        self.say(f"Engine {offer.version}: {status.label}" + (f" ({detail})" if detail else ""))

    def _cycle(self, identity: ComputerIdentity, client: SyncClient) -> CycleResult:
        installed = identity.installation
        answer = self._check_in(client, installed)
        if answer.vms:
            installed = self._deploy_vms(client, installed, answer)
        offer = answer.update
        if offer is None:
            return CycleResult.OK
        pending = installed.state.pending_slot
        already = (
            installed.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
            and pending is not None
            and installed.slots.get(pending) == offer.version
        )
        if offer.status == UpgradeStatus.SIGNALLED and not already:
            result = self._install(client, offer, installed)
            if result is not CycleResult.OK:
                return result
        elif offer.status == UpgradeStatus.SIGNALLED:
            self._report(client, offer, UpgradeStatus.INSTALLED_REBOOT_REQUIRED, "")
        elif not already:
            return CycleResult.OK  # Installed on the server, not on this disk: nothing to boot
        if not self.options.reboot:
            return CycleResult.OK
        return self._reboot(client, offer, installed.version)

    def _deploy_vms(
        self, client: SyncClient, installed: Installation, answer: CheckinResponse
    ) -> Installation:
        """Write the offered VM versions, then check in again so the server sees them."""
        done = deploy_vms(self.disk, installed, answer.vms, restart=self.options.restart_vms)
        for line in done.written:
            self.say(f"VM {line}")
        for name, why in done.failures.items():
            self.say(f"VM {name}: failed: {why}")
        if not done.written and not done.failures:
            return installed
        installed = read_identity(self.disk).installation if done.written else installed
        self._check_in(client, installed, done.failures)
        return installed

    def _install(
        self, client: SyncClient, offer: UpdateOffer, installed: Installation
    ) -> CycleResult:
        self.say(f"Engine {offer.version}: Signalled, downloading {offer.size} bytes")
        try:
            kit = fetch_kit(client, offer, self.options.cache)
            self.say(f"Engine {offer.version}: installing into the inactive slot")
            report = install_kit(self.disk, kit, installed)
        except DiskInUse:
            raise
        except EngineKitError as exc:
            holders = in_use_by(self.disk)
            if holders:
                # Someone took the disk between our look and the engine's lock: not a
                # failed upgrade; the next cycle tries again.
                raise DiskInUse(f"{self.disk}: in use by {', '.join(holders)}") from None
            self._report(client, offer, UpgradeStatus.FAILED, exc.message)
            return CycleResult.FAILED
        self._report(
            client,
            offer,
            UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
            f"slot {report.slot}" if report.slot else "",
        )
        return CycleResult.OK

    def _reboot(self, client: SyncClient, offer: UpdateOffer, old_version: str) -> CycleResult:
        self.say("booting to run the new Engine")
        result = boot_installed_disk(self.disk, timeout=self.options.boot_timeout)
        running = result.running
        if running is not None and running.version == offer.version and not result.fell_back:
            self._report(client, offer, UpgradeStatus.BLANK, f"running in slot {running.slot}")
            outcome = CycleResult.OK
        elif running is None and any(a.stopped for a in result.attempts):
            # Stopped by the timeout before any Engine ran: the new slot was not proven bad
            # (its try was given back), so it stays Installed and boots at the next cycle.
            timeout = self.options.boot_timeout
            self.say(
                f"Engine {offer.version}: the boot was stopped (--timeout {timeout:g} s) before "
                "the Engine ran; still Installed (Reboot Required), booted again at the next "
                "check-in"
            )
            return CycleResult.FAILED
        else:
            why = (
                f"reverted to {old_version} after a failed boot"
                if running is not None
                else "no slot booted after the upgrade"
            )
            self._report(client, offer, UpgradeStatus.FAILED, why)
            outcome = CycleResult.FAILED
        # Check in again at once, so the console shows the version the computer now runs.
        self._check_in(client, read_identity(self.disk).installation)
        return outcome


def run_agents(
    disks: Sequence[Path],
    options: AgentOptions,
    say: Say,
    *,
    once: bool,
    interval: float | None,
    jobs: int = 2,
    stop: threading.Event | None = None,
) -> list[CycleResult]:
    """Run every disk's agent on a pool of at most `jobs` threads; the results of the last
    cycle, in the order of `disks`. Without `once`, loops until `stop` is set."""
    stop = stop or threading.Event()
    lock = threading.Lock()

    def locked_say(text: str) -> None:
        with lock:
            say(text)

    agents = [ComputerAgent(disk, options, locked_say) for disk in disks]
    workers = max(1, min(jobs, len(disks)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine-agent") as pool:
        while True:
            # One round: every disk checks in once, at most `jobs` at a time.
            futures = [pool.submit(agent.check_in_once) for agent in agents]
            try:
                results = [f.result() for f in futures]
            except BaseException:
                stop.set()
                for future in futures:
                    future.cancel()
                raise
            if once or stop.is_set():
                return results
            asked = [a.interval for a in agents if a.interval is not None]
            wait = interval or (min(asked) if asked else 60.0)
            if stop.wait(wait * random.uniform(0.9, 1.1)):
                return results
