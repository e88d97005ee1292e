"""Writing installer ISOs to USB sticks safely: discovery (pyudev), selection policy, an
exclusive, honest-progress copier with read-back verification."""
