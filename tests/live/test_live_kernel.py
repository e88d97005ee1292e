"""The live kernel's pruned modules tree lets modprobe resolve every driver the installer loads."""

from __future__ import annotations

import pytest

from enginekit.errors import HostError
from enginekit.process import run_text
from reference_builds.kernel import LIVE_MODULES, LiveKernel, fetch_live_kernel

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_kernel() -> LiveKernel:
    try:
        return fetch_live_kernel()
    except HostError as exc:
        pytest.skip(f"cannot fetch the live kernel here: {exc.message}")


def test_every_live_module_resolves_in_the_pruned_tree(live_kernel: LiveKernel) -> None:
    assert set(live_kernel.load) | set(live_kernel.builtin) == {
        m.replace("-", "_") for m in LIVE_MODULES
    }
    base, release = live_kernel.modules_base, live_kernel.release
    out = run_text(
        ["modprobe", "-d", base, "-S", release, "-a", "--show-depends", *live_kernel.load]
    )
    shown = out.replace("-", "_")
    for module in live_kernel.load:
        assert f"/{module}.ko" in shown, module
