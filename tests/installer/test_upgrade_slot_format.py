"""The upgrade formats the new slot through `InstallationSession.format()`,
which refuses a partition whose files the session has open, instead of running mkfs on the
partition device behind the session's back. A real 4.5.0 disk and the real 5.0.0 medium.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from disk_images.errors import NotAnEngineInstallation
from disk_images.layout import Slot
from disk_images.session import open_installation
from enginekit.versions import DiskLayout
from installer.engine.checkpoints import UPGRADE_STEPS, StepTracker
from installer.engine.common import SystemImage
from installer.engine.upgrade import _write_and_switch
from installer.plan import InstallMode, InstallPlan
from media.reader import MediumReader
from reference_builds.pytest_plugin import EngineDiskFactory

pytestmark = [pytest.mark.root]


def test_upgrade_will_not_format_a_slot_in_use(iso: Path, engine_disk: EngineDiskFactory) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    with MediumReader.open(iso) as medium:
        image = SystemImage.read(medium)
    plan = InstallPlan(iso, disk, InstallMode.UPGRADE, "5.0.0", eula_accepted=True)
    with open_installation(disk, writable=True, layout=DiskLayout.GPT_AB) as session:
        state = session.read_state()
        assert state is not None
        assert state.active_slot is Slot.A
        in_use = session.slot(Slot.B)  # the slot the upgrade would write, open in the session
        names = sorted(in_use.list("/"))
        with pytest.raises(NotAnEngineInstallation, match="in use in this session"):
            _write_and_switch(
                plan, session, image, state, session.read_config(), Slot.B,
                StepTracker(UPGRADE_STEPS, None), repair=False,
            )  # fmt: skip
        assert sorted(in_use.list("/")) == names  # not formatted under the session's feet
