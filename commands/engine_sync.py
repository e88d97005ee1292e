"""`engine-sync`: the Synchronizer server (`serve`) and its command-line console.

`serve --data DIR` runs the server; every other sub-command is a client of its JSON API
(documented at /openapi.json), reading the server URL and token from --server/--token or
ENGINE_SYNC_SERVER/ENGINE_SYNC_TOKEN. `--json` prints the API's own documents.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from enginekit.cli import ArgumentParser, add_common_options, add_debug_option, run_main
from enginekit.errors import EngineKitError, UserInputError
from enginekit.text import one_line
from sync_server.client import SERVER_ENV, TOKEN_ENV, ApiRefused, SyncClient


def _client(args: argparse.Namespace) -> SyncClient:
    return SyncClient.from_options(args.server, args.token)


@contextmanager
def _refusal_hint(hint: str) -> Iterator[None]:
    """A refusal the server gave no hint for gets `hint` (the command listing what exists)."""
    try:
        yield
    except ApiRefused as exc:
        if exc.server_hint is None:
            exc.hint = hint
        raise


def _emit(args: argparse.Namespace, doc: Any, lines: list[str]) -> int:
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in lines:
            print(line)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from sync_server.server import ServeOptions, parse_listen, serve

    logging.getLogger().setLevel(logging.DEBUG if args.debug else logging.INFO)
    host, port = parse_listen(args.listen)
    serve(
        ServeOptions(
            data_dir=args.data,
            host=host,
            port=port,
            database=args.database,
            scan_interval=args.scan_interval,
            checkin_interval=args.checkin_interval,
        )
    )
    return 0


def _task_line(task: dict[str, Any]) -> str:
    line = f"task {task['id']}: {task['kind']} {one_line(task['source'])} {task['state']}"
    if task["state"] == "running":
        line += f" {task['progress'] * 100:.0f}%"
    if task.get("error"):
        line += f": {one_line(task['error'])}"
    return line


def _check_iso_path(iso: Path) -> None:
    """One line for an ISO path that cannot be uploaded (missing, not a regular file,
    unreadable), checked before the server is called; never opens a FIFO."""
    hint = "give the path of an Engine ISO file"
    try:
        mode = iso.stat().st_mode
    except FileNotFoundError:
        raise UserInputError(f"{iso}: no such file", hint=hint) from None
    except OSError as exc:
        raise UserInputError(f"{iso}: cannot be read ({exc.strerror})", hint=hint) from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise UserInputError(f"{iso}: {kind}", hint=hint)
    try:
        with iso.open("rb"):
            pass
    except OSError as exc:
        raise UserInputError(
            f"{iso}: cannot be read ({exc.strerror})",
            hint="check the file's permissions, or run as a user who may read it",
        ) from None


def cmd_import(args: argparse.Namespace) -> int:
    _check_iso_path(args.iso)
    with _client(args) as client:
        task = client.upload("/api/v1/imports", args.iso)
        if not args.wait:
            return _emit(args, task, [_task_line(task) + " (engine-sync tasks shows its progress)"])
        while not _finished(task):
            task = client.get(f"/api/v1/tasks/{task['id']}?wait=60")
    _emit(args, task, [_task_line(task)])
    if task["state"] == "failed":
        raise ImportFailed(
            f"{args.iso}: the import failed: {one_line(task['error'])}",
            hint="check the ISO with engine-media verify",
        )
    return 0 if task["state"] == "succeeded" else 1


class ImportFailed(EngineKitError):
    """The server's import task failed (the ISO is not a sound kit): exit status 1."""


def _finished(task: dict[str, Any]) -> bool:
    return task["state"] in ("succeeded", "failed", "cancelled")


def cmd_kits(args: argparse.Namespace) -> int:
    with _client(args) as client:
        kits = client.get("/api/v1/kits")
    lines = [
        f"kit {k['id']}: {k['kind']} {k['version']} (upgrades from "
        f"{', '.join(k['upgrade_from']) or '-'}) {k['size']} bytes sha256 {k['sha256']}"
        for k in kits
    ] or ["no kits in the Software Library"]
    return _emit(args, kits, lines)


def cmd_tasks(args: argparse.Namespace) -> int:
    with _client(args) as client:
        tasks = client.get("/api/v1/tasks")
    return _emit(args, tasks, [_task_line(t) for t in tasks] or ["no tasks"])


def cmd_task_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client, _refusal_hint("engine-sync tasks lists the tasks"):
        task = client.post(f"/api/v1/tasks/{args.id}/cancel")
    return _emit(args, task, [_task_line(task)])


def cmd_token_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        body = {} if args.name is None else {"name": args.name}
        token = client.post("/api/v1/tokens", body)
    # The token itself is the one thing printed: scripts capture it; it is shown only once.
    return _emit(args, token, [token["token"]])


def cmd_token_revoke(args: argparse.Namespace) -> int:
    hint = "engine-sync token create --json prints a token's id; engine-sync computers the rest"
    with _client(args) as client, _refusal_hint(hint):
        token = client.post(f"/api/v1/tokens/{args.id}/revoke")
    return _emit(args, token, [f"token {token['id']} ({one_line(token['name'])}) revoked"])


def _computer_lines(c: dict[str, Any]) -> list[str]:
    slot = f" slot {c['active_slot']}" if c["active_slot"] else ""
    lines = [
        f"computer {c['id']}: {one_line(c['name'])} Engine {one_line(c['running_version'])}"
        f"{slot}, "
        f"{len(c['vms'])} VMs, last contact {c['last_contact']}"
    ]
    for a in c["assignments"]:
        detail = f" ({one_line(a['detail'])})" if a["detail"] else ""
        lines.append(f"  Engine {a['kit_version']}: Upgrade {a['status_label']}{detail}")
    return lines


def cmd_computers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        computers = client.get("/api/v1/computers")
    lines = [line for c in computers for line in _computer_lines(c)] or ["no computers"]
    return _emit(args, computers, lines)


def _kit_id(client: SyncClient, kit: str) -> int:
    for k in client.get("/api/v1/kits"):
        if kit in (str(k["id"]), k["version"]):
            return int(k["id"])
    raise UserInputError(f"no kit {one_line(kit)!r}", hint="engine-sync kits lists the kits")


def cmd_assign(args: argparse.Namespace) -> int:
    with _client(args) as client, _refusal_hint("engine-sync computers lists the computers"):
        kit_id = _kit_id(client, args.kit)
        rows = client.post(f"/api/v1/kits/{kit_id}/assignments", {"computers": args.computer})
    lines = [
        f"Engine {r['kit_version']} assigned to computer {r['computer_id']}: "
        f"Upgrade {r['status_label']}"
        for r in rows
    ]
    return _emit(args, rows, lines)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability from 0 to 1")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of computers (1 or more)")
    return int(text)


def cmd_simulate(args: argparse.Namespace) -> int:
    from sync_agent.simulated import FleetOptions, Outcomes, run_fleet

    client = _client(args)  # checks --server/--token the same way as every command
    client.close()
    options = FleetOptions(
        count=args.count,
        seed=args.seed,
        engine=args.engine,
        outcomes=Outcomes(
            download_failure=args.download_failure,
            install_failure=args.install_failure,
            boot_fallback=args.boot_fallback,
        ),
        reboot=not args.no_reboot,
        interval=args.interval,
        concurrency=args.concurrency,
    )
    token = args.token or os.environ.get(TOKEN_ENV, "")
    summary = run_fleet(client.server, token, options, args.duration)
    doc = {
        "simulated_seconds": summary.simulated_seconds,
        "checkins": summary.checkins,
        "errors": summary.errors,
        "versions": summary.versions,
        "reports": summary.reports,
    }
    return _emit(args, doc, summary.lines())


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="engine-sync", description="Synchronizer: Engine update kits.")
    add_common_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, help_text: str, handler: Any, client: bool = True, within: Any = commands
    ) -> Any:
        sub = within.add_parser(name, help=help_text, description=help_text)
        add_debug_option(sub)
        if handler is None:
            return sub  # a group: its actions carry the options
        sub.add_argument("--json", action="store_true", help="print JSON")
        if client:
            sub.add_argument("--server", help=f"server URL (default ${SERVER_ENV})")
            sub.add_argument("--token", help=f"token (default ${TOKEN_ENV})")
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", "run the Synchronizer server", cmd_serve, client=False)
    serve.add_argument("--data", type=Path, required=True, metavar="DIR", help="data directory")
    serve.add_argument("--listen", default="127.0.0.1:8470", metavar="HOST:PORT")
    serve.add_argument("--database", metavar="URL", help="SQLAlchemy URL (default DIR/sync.db)")
    serve.add_argument("--scan-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    serve.add_argument(
        "--checkin-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds the server tells computers to wait between check-ins (default 60)",
    )
    imp = command("import", "import an Engine ISO as an Engine Update kit", cmd_import)
    imp.add_argument("iso", type=Path)
    imp.add_argument("--wait", action="store_true", help="wait for the import task to finish")
    command("kits", "list the Software Library", cmd_kits)
    command("tasks", "list the background tasks", cmd_tasks)
    task = command("task", "act on one task", None)
    task_sub = task.add_subparsers(dest="task_command", required=True, metavar="ACTION")
    cancel = command("cancel", "cancel a queued or running task", cmd_task_cancel, within=task_sub)
    cancel.add_argument("id", type=int)
    token = command("token", "computer enrolment tokens", None)
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = command(
        "create", "make a computer enrolment token", cmd_token_create, within=token_sub
    )
    create.add_argument(
        "--name",
        help="the computer's name in the console (default: its disk id); printable, "
        "at most 200 characters",
    )
    revoke = command("revoke", "revoke a computer token", cmd_token_revoke, within=token_sub)
    revoke.add_argument("id", type=int)
    command("computers", "list the computers that checked in", cmd_computers)
    assign = command("assign", "assign a kit to computers (the Upgrade box)", cmd_assign)
    assign.add_argument("kit", help="kit id or Engine version")
    assign.add_argument("--computer", type=int, nargs="+", required=True, metavar="ID")
    sim = command(
        "simulate",
        "run simulated computers (the check-in protocol, no disk, seeded outcomes, a "
        "simulated clock) against the server; needs the admin token to enrol them",
        cmd_simulate,
    )
    sim.add_argument("--count", type=_count, required=True, metavar="N", help="computers")
    sim.add_argument("--seed", type=int, default=0, help="seed of the outcomes (default 0)")
    sim.add_argument("--engine", default="4.5.0", metavar="VERSION", help="running version")
    sim.add_argument(
        "--duration",
        type=_positive,
        default=3600.0,
        metavar="S",
        help="simulated seconds to run (default 3600)",
    )
    sim.add_argument(
        "--interval", type=_positive, metavar="S", help="check-in interval (default: the server's)"
    )
    sim.add_argument("--concurrency", type=int, default=8, metavar="C", help="parallel requests")
    sim.add_argument("--no-reboot", action="store_true", help="stop at Installed (Reboot Req.)")
    for name, default in (("download", 0.01), ("install", 0.01)):
        sim.add_argument(
            f"--{name}-failure",
            type=_probability,
            default=default,
            metavar="P",
            help=f"{name} failure probability (default {default})",
        )
    sim.add_argument(
        "--boot-fallback",
        type=_probability,
        default=0.02,
        metavar="P",
        help="probability that the new slot falls back at its first boot (default 0.02)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), lambda args: int(args.handler(args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
