"""The Engine side of Synchronizer: the update daemon of a registered computer, played over
disk images (`engine-disk agent`). It checks in, downloads an assigned kit and installs it
through the installer's upgrade engine (`installer.engine.run_plan`), never its screens.
"""
