"""`engine-sync`: the Synchronizer server (`serve`) and its command-line console.

`serve --data DIR` runs the server; every other sub-command is a client of its JSON API
(documented at /openapi.json), reading the server URL and token from --server/--token or
ENGINE_SYNC_SERVER/ENGINE_SYNC_TOKEN. `--json` prints the API's own documents.
"""

from __future__ import annotations

import argparse
import json
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
from sync_server.rollout_state import parse_stages


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
        body = {"computers": args.computer, "retry": args.retry}
        rows = client.post(f"/api/v1/kits/{kit_id}/assignments", body)
    lines = [
        f"Engine {r['kit_version']} assigned to computer {r['computer_id']}: "
        f"Upgrade {r['status_label']}"
        for r in rows
    ]
    return _emit(args, rows, lines)


def _id_list(text: str) -> list[int]:
    """`3,4,7` for --test-group and --computers."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of computer ids (3,4,7)"
        ) from None
    if not ids:
        raise argparse.ArgumentTypeError("give at least one computer id")
    return ids


def _stages(text: str) -> list[str]:
    """`30%,60%,100%` or `2,5` for --stages, checked as the server checks it."""
    try:
        return [str(spec) for spec in parse_stages([p for p in text.split(",") if p.strip()])]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _percent(text: str) -> float:
    """`80%` or `80` for the thresholds."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percent (80%)") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a percent from 0% to 100%")
    return value


def _share(value: float) -> str:
    return f"{value:g}%"


def _rollout_lines(r: dict[str, Any]) -> list[str]:
    stages = r["stages"]
    lines = [
        f"rollout {r['id']}: {one_line(r['name'])}, Engine {r['kit_version']}, {r['state']} "
        f"at {'the ' if r['stage'] == 0 else ''}{stages[r['stage']]['name']} (success threshold "
        f"{_share(r['success_threshold'])}, error threshold {_share(r['error_threshold'])})"
    ]
    if r["reason"]:
        lines.append(f"  {r['state']}: {one_line(r['reason'])}")
    for stage in stages:
        reach = f" ({stage['reach']})" if stage["reach"] else ""
        started = "" if stage["started"] else ", not started"
        lines.append(
            f"  {stage['name']}{reach}: {stage['succeeded']} of {stage['members']} succeeded, "
            f"{stage['failed']} failed{started}"
        )
    for t in r["targets"]:
        where = "skipped" if t["stage"] is None else stages[t["stage"]]["name"]
        head = f"  computer {t['computer_id']} ({one_line(t['computer_name'])}), {where}: "
        if t["status_label"] is not None:
            detail = f" ({one_line(t['detail'])})" if t["detail"] else ""
            lines.append(f"{head}Upgrade {t['status_label']}{detail}")
        else:
            lines.append(head + (one_line(t["note"]) or t["outcome"]))
    return lines


def cmd_rollout_create(args: argparse.Namespace) -> int:
    with _client(args) as client, _refusal_hint("engine-sync computers lists the computers"):
        body: dict[str, Any] = {
            "kit_id": _kit_id(client, args.kit),
            "test_group": args.test_group,
            "stages": args.stages,
            "success_threshold": args.success_threshold,
            "error_threshold": args.error_threshold,
        }
        if args.computers is not None:
            body["computers"] = args.computers
        if args.name is not None:
            body["name"] = args.name
        rollout = client.post("/api/v1/rollouts", body)
    return _emit(args, rollout, _rollout_lines(rollout))


def cmd_rollout_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rollouts = client.get("/api/v1/rollouts")
    lines = [_rollout_lines(r)[0] for r in rollouts] or ["no rollouts"]
    return _emit(args, rollouts, lines)


def cmd_rollout_status(args: argparse.Namespace) -> int:
    with _client(args) as client, _refusal_hint("engine-sync rollout list lists the rollouts"):
        rollout = client.get(f"/api/v1/rollouts/{args.id}")
    return _emit(args, rollout, _rollout_lines(rollout))


def cmd_rollout_act(args: argparse.Namespace) -> int:
    with _client(args) as client, _refusal_hint("engine-sync rollout list lists the rollouts"):
        rollout = client.post(f"/api/v1/rollouts/{args.id}/{args.rollout_command}")
    return _emit(args, rollout, _rollout_lines(rollout))


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
    serve.add_argument(
        "--listen",
        default="127.0.0.1:8470",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:8470)",
    )
    serve.add_argument("--database", metavar="URL", help="SQLAlchemy URL (default DIR/sync.db)")
    serve.add_argument(
        "--scan-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between looks into DIR/FileImport for new ISOs (default 10)",
    )
    serve.add_argument(
        "--checkin-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds the server tells computers to wait between check-ins (default 60)",
    )
    imp = command("import", "import an Engine ISO as an Engine Update kit", cmd_import)
    imp.add_argument("iso", type=Path, metavar="ISO", help="the Engine installer ISO")
    imp.add_argument("--wait", action="store_true", help="wait for the import task to finish")
    command("kits", "list the Software Library", cmd_kits)
    command("tasks", "list the background tasks", cmd_tasks)
    task = command("task", "act on one task", None)
    task_sub = task.add_subparsers(dest="task_command", required=True, metavar="ACTION")
    cancel = command("cancel", "cancel a queued or running task", cmd_task_cancel, within=task_sub)
    cancel.add_argument("id", type=int, metavar="ID", help="the task id (engine-sync tasks)")
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
    revoke.add_argument(
        "id", type=int, metavar="ID", help="the token id (engine-sync token create printed it)"
    )
    command("computers", "list the computers that checked in", cmd_computers)
    assign = command("assign", "assign a kit to computers (the Upgrade box)", cmd_assign)
    assign.add_argument("kit", help="kit id or Engine version")
    assign.add_argument(
        "--computer",
        type=int,
        nargs="+",
        required=True,
        metavar="ID",
        help="computer ids (engine-sync computers)",
    )
    assign.add_argument(
        "--retry",
        action="store_true",
        help="offer the kit again where it failed (a failed computer is never re-offered "
        "the same kit without it)",
    )
    rollout = command("rollout", "staged rollouts: a test group first, then stages", None)
    rollout_sub = rollout.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    create_rollout = command(
        "create", "start a rollout of a kit", cmd_rollout_create, within=rollout_sub
    )
    create_rollout.add_argument("kit", help="kit id or Engine version")
    create_rollout.add_argument(
        "--test-group", type=_id_list, required=True, metavar="C1,C2", help="test computer ids"
    )
    create_rollout.add_argument(
        "--computers",
        type=_id_list,
        metavar="C3,C4",
        help="the other targets (default: every registered computer)",
    )
    create_rollout.add_argument(
        "--stages",
        type=_stages,
        required=True,
        metavar="STAGES",
        help="cumulative reach of each stage over the remaining targets, percents or counts, "
        "e.g. 30%%,60%%,100%% or 2,5",
    )
    create_rollout.add_argument(
        "--success-threshold",
        type=_percent,
        required=True,
        metavar="P",
        help="percent of a stage that must succeed (booted and committed) before the next",
    )
    create_rollout.add_argument(
        "--error-threshold",
        type=_percent,
        required=True,
        metavar="P",
        help="percent of a stage whose failure pauses the rollout",
    )
    create_rollout.add_argument("--name", help="the rollout's name (default: Engine VERSION)")
    command("list", "list the rollouts", cmd_rollout_list, within=rollout_sub)
    for name, handler, text in (
        ("status", cmd_rollout_status, "a rollout's stages and targets"),
        ("pause", cmd_rollout_act, "pause a rollout (in flight completes)"),
        ("resume", cmd_rollout_act, "resume a paused rollout, accepting its failures so far"),
        ("cancel", cmd_rollout_act, "cancel a rollout: no more offers; in flight completes"),
    ):
        action = command(name, text, handler, within=rollout_sub)
        action.add_argument("id", type=int, metavar="ID", help="the rollout id (rollout list)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser(), lambda args: int(args.handler(args)), argv)


if __name__ == "__main__":
    raise SystemExit(main())
