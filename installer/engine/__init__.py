"""The install and upgrade engine: the only code that writes to a target disk.

`run_plan(plan, progress)` carries out an `InstallPlan` (fresh install, erase, upgrade or
repair) and returns an `InstallReport`. Before the first write it checks everything again,
whatever the screens already decided: the target is writable and large enough, the medium
passes verification against its manifest, the plan still matches what is on the disk, and the
upgrade rules (`installer.rules`) allow the mode. A refusal is one clear line and leaves the
disk unchanged. Steps are named checkpoints (`installer.engine.checkpoints`).
"""

from __future__ import annotations

from installer.engine.run import run_plan

__all__ = ["run_plan"]
