"""The shipped command-line programs, one module per command, above the packages they drive.

`engine_media` (and its `usb` sub-commands in `engine_media_usb`), `engine_disk`,
`engine_install`, `engine_sync` and `engine_live` parse arguments, call the libraries and
print; nothing in the product imports this package. A Ctrl-C while a program is still
starting (importing, parsing its arguments) ends it with one line, status 130.
"""

from enginekit.interrupts import quiet_interrupt_while_starting

# Names of the console scripts (pyproject.toml's [project.scripts]).
PROGRAMS = frozenset(
    {"engine-media", "engine-disk", "engine-install", "engine-sync", "engine-live"}
)
quiet_interrupt_while_starting(PROGRAMS)
