"""Disk images of Engine installations: create, partition, loop-attach, mount, read and write
partition files, probe read-only, and boot in QEMU. Never imports the installer."""
