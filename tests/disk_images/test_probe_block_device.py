"""The probe reads a disk given as a block device, as the live installer sees a machine's disks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from disk_images.loop import LoopDevice
from disk_images.probe import Installation, probe

pytestmark = pytest.mark.root


def test_probe_of_a_block_device_finds_the_installation(
    engine_disk: Callable[..., Path],
) -> None:
    image = engine_disk("4.5.0", with_vms=False)
    with LoopDevice(image, read_only=True) as loop:
        result = probe(loop.device)
    assert isinstance(result, Installation), result
    assert result.version == "4.5.0"
