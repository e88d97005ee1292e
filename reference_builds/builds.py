"""The table of reference Engine builds (shared/engine-domain.md, "The reference Engine builds").

Which disk layout and PV drivers each reference build has, and which installed versions it may
upgrade directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout, EngineVersion


@dataclass(frozen=True)
class ReferenceBuild:
    version: EngineVersion
    layout: DiskLayout
    pv_drivers: str
    upgrade_from: tuple[str, ...]  # installed versions this build upgrades directly


REFERENCE_BUILDS: dict[str, ReferenceBuild] = {
    "4.0.0": ReferenceBuild(EngineVersion(4, 0, 0), DiskLayout.MBR, "4.0.0", ()),
    "4.5.0": ReferenceBuild(EngineVersion(4, 5, 0), DiskLayout.GPT_AB, "4.5.0", ("4.0.0",)),
    "5.0.0": ReferenceBuild(EngineVersion(5, 0, 0), DiskLayout.GPT_AB, "5.0.0", ("4.5.0",)),
}


def reference_build(version: str) -> ReferenceBuild:
    try:
        return REFERENCE_BUILDS[version]
    except KeyError:
        known = ", ".join(REFERENCE_BUILDS)
        raise UserInputError(
            f"there is no reference Engine {version!r}; the reference builds are {known}",
            hint=f"choose one of {known}",
        ) from None
