"""The answer files the tests install with (`engine-install --answers`): a standalone fresh
install and, for a disk that holds data, a standalone erase confirmed with its disk id."""

from __future__ import annotations

_EULA_AND_KEYBOARD = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n'
_STANDALONE = '[registration]\nmode = "standalone"\n'

FRESH_STANDALONE = _EULA_AND_KEYBOARD + _STANDALONE


def erase_standalone(disk_id: str) -> str:
    """Answers that erase the disk whose id is `disk_id` and install standalone."""
    erase = f'[existing]\naction = "erase"\nconfirm_erase = "{disk_id}"\n'
    return _EULA_AND_KEYBOARD + erase + _STANDALONE
