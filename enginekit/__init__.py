"""Shared ground for the EngineKit packages: running programs, errors, the CLI frame, caches.

Everything here is independent of media, disk images and the installer, so all three may
import it. Nothing here imports them.
"""

__version__ = "0.1.0"
