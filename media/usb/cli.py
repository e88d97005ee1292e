"""`engine-media usb ...` sub-commands (filled in by the USB work)."""

from __future__ import annotations

import argparse


def add_usb_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `usb list|write|verify` under `engine-media`."""
    parser = subparsers.add_parser("usb", help="find, write and verify USB sticks")
    parser.set_defaults(handler=None)
