"""The Engine installer: screens as a state machine over one model, three front ends
(interactive, answer file, Python API), and the install/upgrade engine that writes disks."""
