"""The shipped command-line programs, one module per command, above the packages they drive.

`engine_media` (and its `usb` sub-commands in `engine_media_usb`), `engine_disk` and
`engine_install` parse arguments, call the libraries and print; nothing imports this package.
"""
