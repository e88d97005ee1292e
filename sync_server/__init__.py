"""Synchronizer: the management server that imports Engine update kits and deploys them to the
computers that check in with it (`engine-sync serve`). It imports `enginekit`, `media` (to
verify an ISO and read its manifest) and `disk_images.state` (the upgrade status values),
never `installer`.
"""
