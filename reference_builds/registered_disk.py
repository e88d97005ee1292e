"""Reference Engine installations registered with a Synchronizer: the same fresh-install path
as `reference_builds.disk` (a plan carried out by `installer.engine.run_plan`), with the
install plan's registration in mode synchronizer (server and token), then the sample VMs.
"""

from __future__ import annotations

from pathlib import Path

from disk_images.image import new_image
from enginekit.errors import UserInputError
from enginekit.sizes import human_size
from installer.engine import run_plan
from installer.engine.refusals import MINIMUM_DISK_BYTES
from installer.plan import InstallMode, InstallPlan, Registration, RegistrationMode, Secret
from reference_builds.builds import reference_build
from reference_builds.disk import add_sample_vms


def create_registered_disk(
    path: Path,
    version: str,
    size_bytes: int,
    server: str,
    token: str,
    *,
    with_vms: bool = True,
    force: bool = False,
) -> Path:
    """A reference Engine `version` on a new sparse image, registered with `server`."""
    from reference_builds.media import reference_iso

    build = reference_build(version)
    if size_bytes < MINIMUM_DISK_BYTES:
        raise UserInputError(
            f"{path}: {human_size(size_bytes)} is too small for Engine "
            f"(at least {human_size(MINIMUM_DISK_BYTES)})",
            hint="use --size 8G (or at least 512M)",
        )
    medium = reference_iso(version)
    plan_version = str(build.version)
    with new_image(path, size_bytes, force=force) as partial:
        run_plan(
            InstallPlan(
                medium=medium,
                target=partial,
                mode=InstallMode.FRESH,
                target_version=plan_version,
                keyboard="us",
                registration=Registration(
                    RegistrationMode.SYNCHRONIZER, server=server, token=Secret(token)
                ),
                eula_accepted=True,
            )
        )
        if with_vms:
            add_sample_vms(partial, plan_version)
    return path
