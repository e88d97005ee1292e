"""pytest plugin (entry point `pytest11`): fixtures for users' own Engine upgrade tests.

Filled in with the installer: `engine_disk` yields a fresh reference disk image of a chosen
version.
"""
