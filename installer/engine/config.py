"""The storage's `/engine/config.json` as a plan asks for it: keyboard and registration.

A fresh install takes both from the plan (defaults: `us`, standalone). An upgrade or repair
keeps what the disk has for whatever the plan leaves as None. The plan's registration is the
disk's own type; its token stays a `Secret` until `EngineConfig.to_json` writes it.
"""

from __future__ import annotations

from disk_images.state import EngineConfig, Registration, RegistrationMode
from installer.plan import InstallPlan

DEFAULT_KEYBOARD = "us"


def new_config(plan: InstallPlan, old: EngineConfig | None) -> EngineConfig:
    """The config after this run: the plan's choices over what the disk had."""
    keyboard = plan.keyboard or (old.keyboard if old else DEFAULT_KEYBOARD)
    if plan.registration is not None:
        registration = plan.registration
    elif old is not None:
        registration = old.registration
    else:
        registration = Registration(RegistrationMode.STANDALONE)
    return EngineConfig(keyboard=keyboard, registration=registration)
