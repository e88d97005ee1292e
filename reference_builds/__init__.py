"""The reference Engine builds (4.0.0, 4.5.0, 5.0.0): test and demo scaffolding, not product.

Everything that makes the built-in reference Engine lives here: the table of reference builds,
the Debian kernel fetched into the cache, the busybox initramfs images, the payload trees, the
cached reference ISOs and disks, and the pytest plugin that hands them to tests. The product
packages (`media`, `disk_images`, `installer`) never import this package; `commands` and the
tests do.
"""
