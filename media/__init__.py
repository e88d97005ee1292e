"""Engine installer media: reference payloads, hybrid ISO build, inspection, verification,
the isomd5sum-compatible embedded checksum, and safe writing to USB sticks."""
