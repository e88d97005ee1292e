"""The Synchronizer console: the guide's screens as server-rendered pages under `/console/`,
served by `engine-sync serve` itself. It reads and changes the server through the same code
as the JSON API (`sync_server.api_*`), never through the installer's UI.

Modules: `app` (the mounted sub-application, its session middleware and error pages),
`auth` (sign-in with the admin token, session lifetime, CSRF), `library` (Software Library,
Import, a kit's Computers tab), `fleet` (Computers, a computer's Software tab), `task_pages`
(Tasks, properties, Cancel), `rollout_pages` (Rollouts: list, create, a rollout's stages
with Pause / Resume / Cancel), `vm_pages` (Virtual Machines, an image's Users tab, Publish),
`rendering` (templates and the labels the guide uses).
Live updates: htmx (vendored in `static/`, see `static/README.txt`) polls small fragments.
"""

from sync_server.console.app import CONSOLE_PATH, build_console

__all__ = ["CONSOLE_PATH", "build_console"]
