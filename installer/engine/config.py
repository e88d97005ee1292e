"""The storage's `/engine/config.json` as a plan asks for it: keyboard and registration.

A fresh install takes both from the plan (defaults: `us`, standalone). An upgrade or repair
keeps what the disk has for whatever the plan leaves as None. The Synchronizer token arrives
as a `Secret` and is revealed only here, where it is written to the disk it belongs on.
"""

from __future__ import annotations

from disk_images.state import EngineConfig
from disk_images.state import Registration as DiskRegistration
from disk_images.state import RegistrationMode as DiskRegistrationMode
from enginekit.errors import UserInputError
from installer.plan import InstallPlan, Registration, RegistrationMode

DEFAULT_KEYBOARD = "us"


def disk_registration(registration: Registration) -> DiskRegistration:
    if registration.mode is RegistrationMode.STANDALONE:
        return DiskRegistration(DiskRegistrationMode.STANDALONE)
    token = registration.token.reveal() if registration.token is not None else None
    try:
        return DiskRegistration(DiskRegistrationMode.SYNCHRONIZER, registration.server, token)
    except UserInputError:
        raise UserInputError(
            "a Synchronizer registration needs a server and a token",
            hint="give [registration] server and token, or choose standalone",
        ) from None


def new_config(plan: InstallPlan, old: EngineConfig | None) -> EngineConfig:
    """The config after this run: the plan's choices over what the disk had."""
    keyboard = plan.keyboard or (old.keyboard if old else DEFAULT_KEYBOARD)
    if plan.registration is not None:
        registration = disk_registration(plan.registration)
    elif old is not None:
        registration = old.registration
    else:
        registration = DiskRegistration(DiskRegistrationMode.STANDALONE)
    return EngineConfig(keyboard=keyboard, registration=registration)
