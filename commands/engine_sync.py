"""`engine-sync`: the Synchronizer server (`serve`) and its command-line console.

`serve --data DIR` runs the server (with `--upstream URL`, a remote server of that one);
every other sub-command is a client of its JSON API
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
from urllib.parse import quote

from enginekit.cli import ArgumentParser, add_common_options, add_debug_option, run_main
from enginekit.errors import EngineKitError, UserInputError
from enginekit.text import one_line
from sync_server.client import SERVER_ENV, TOKEN_ENV, ApiRefused, SyncClient
from sync_server.operators import MIN_PASSWORD
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
    upstream, bandwidth = _remote_options(args)
    serve(
        ServeOptions(
            data_dir=args.data,
            host=host,
            port=port,
            database=args.database,
            scan_interval=args.scan_interval,
            checkin_interval=args.checkin_interval,
            upstream=upstream,
            upstream_token=args.upstream_token,
            bandwidth=bandwidth,
            contact_interval=args.contact_interval,
        )
    )
    return 0


def _remote_options(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """--upstream URL --upstream-token T [--bandwidth RATE], checked before anything starts."""
    from sync_server.bandwidth import parse_rate
    from sync_server.client import checked_server_url

    if args.upstream is None:
        given = [
            o
            for o, v in (("--upstream-token", args.upstream_token), ("--bandwidth", args.bandwidth))
            if v is not None
        ]
        if given:
            raise UserInputError(
                f"only a remote server takes {' and '.join(given)}",
                hint="add --upstream URL (the main server) and --upstream-token T, or leave "
                f"{given[0]} out",
            )
        return None, None
    try:
        upstream = checked_server_url(args.upstream)
    except UserInputError:
        raise UserInputError(
            f"--upstream {one_line(args.upstream)}: not an http:// or https:// URL",
            hint="give the main server's URL, e.g. --upstream http://main:8470",
        ) from None
    if not args.upstream_token:
        raise UserInputError(
            "--upstream needs --upstream-token",
            hint="engine-sync site add NAME on the main server prints the site token",
        )
    if args.database is not None:
        raise UserInputError(
            "--database: a remote server keeps no database (the main server holds it)",
            hint="leave --database out with --upstream",
        )
    bandwidth = None if args.bandwidth is None else parse_rate(args.bandwidth)
    return upstream, bandwidth


def _task_line(task: dict[str, Any]) -> str:
    line = f"task {task['id']}: {task['kind']} {one_line(task['source'])} {task['state']}"
    if task["state"] == "running":
        line += f" {task['progress'] * 100:.0f}%"
    if task.get("error"):
        line += f": {one_line(task['error'])}"
    if task.get("note"):
        line += f" ({one_line(task['note'])})"
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
        + (f", site {one_line(c['site'])}" if c.get("site") else "")
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


# --- VM images, backups and the server's own upgrade --------------------------------

VM_COLUMNS = ("Assign", "Staged", "Name", "Full Name", "Running Version", "Assigned Version")


def _vm_table(rows: list[dict[str, Any]]) -> list[str]:
    """Each image's "Users" tab, the guide's columns plus why Running differs."""
    lines: list[str] = []
    for image in dict.fromkeys(r["image"] for r in rows):
        mine = [r for r in rows if r["image"] == image]
        lines.append(f"VM {one_line(image)} ({mine[0]['kind']})")
        table = [
            (
                "x" if r["assign"] else "",
                "x" if r["staged"] else "",
                one_line(r["name"]),
                one_line(r["full_name"]),
                "" if r["running_version"] is None else str(r["running_version"]),
                "" if r["assigned_version"] is None else str(r["assigned_version"]),
                one_line(r["reason"]),
            )
            for r in mine
        ]
        header = (*VM_COLUMNS, "Reason")
        widths = [max(len(c[i]) for c in [header, *table]) for i in range(len(header))]
        for cells in [header, *table]:
            padded = (c.ljust(w) for c, w in zip(cells, widths, strict=True))
            lines.append("  " + "  ".join(padded).rstrip())
    return lines


def cmd_vms(args: argparse.Namespace) -> int:
    query = f"?user={quote(args.user)}" if args.user else ""
    with _client(args) as client:
        doc = client.get(f"/api/v1/vms{query}")
    lines = [f"Synchronizer {doc['synchronizer_version']}"]
    lines += _vm_table(doc["users"]) or ["no VM images published"]
    manual = doc["manual_pv_upgrades"]
    if manual:
        lines.append("PV drivers to upgrade by hand (upgrade guide, step 5):")
        lines += [
            f"  computer {m['computer_id']} ({one_line(m['computer'])}): {m['vm']} "
            f"({m['kind']} VM) has PV drivers {m['pv_drivers']}; its Engine runs {m['engine']}"
            for m in manual
        ]
    return _emit(args, doc, lines)


def cmd_publish(args: argparse.Namespace) -> int:
    from disk_images.layout import VM_NAME

    if not VM_NAME.match(args.vm):
        raise UserInputError(
            f"{one_line(args.vm)!r} is not a VM image name",
            hint="use letters, digits, '.', '_' and '-' (at most 64)",
        )
    body = {"kind": args.kind, "users": args.user or [], "staged": args.staged}
    with _client(args) as client, _refusal_hint("engine-sync vms lists images and users"):
        doc = client.post(f"/api/v1/vms/{quote(args.vm, safe='')}/publish", body)
    staged = " (staged)" if doc["staged"] else ""
    users = ", ".join(one_line(u) for u in doc["users"]) or "nobody yet"
    line = (
        f"VM {one_line(doc['image'])} version {doc['version']}{staged} published by "
        f"Synchronizer {doc['published_by']} (PV drivers {doc['pv_drivers']}), assigned to "
        f"{users}"
    )
    return _emit(args, doc, [line])


def cmd_user_add(args: argparse.Namespace) -> int:
    body = {"name": args.name, "full_name": args.full_name, "computer_id": args.computer}
    with _client(args) as client, _refusal_hint("engine-sync computers lists the computers"):
        doc = client.post("/api/v1/users", body)
    return _emit(
        args, doc, [f"user {one_line(doc['name'])} on computer {doc['computer_id']} added"]
    )


# --- console operators ---------------------------------------------------------------


def _read_password(args: argparse.Namespace) -> str:
    """The new operator's password: the first line of stdin with --password-stdin, else
    typed twice at the terminal without echo."""
    import getpass

    if args.password_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    elif not sys.stdin.isatty():
        raise UserInputError(
            "operator add: no terminal to type the password on",
            hint="pipe it in with --password-stdin",
        )
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise UserInputError(
                "operator add: the two passwords differ", hint="run it again and type it twice"
            )
    if len(password) < MIN_PASSWORD:
        raise UserInputError(
            f"operator add: the password is shorter than {MIN_PASSWORD} characters",
            hint="choose a longer password",
        )
    return password


def cmd_operator_add(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with _client(args) as client, _refusal_hint("engine-sync operator list lists them"):
        doc = client.post("/api/v1/operators", {"name": args.name, "password": password})
    return _emit(args, doc, [f"operator {one_line(doc['name'])} added"])


def cmd_operator_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        docs = client.get("/api/v1/operators")
    lines = [f"{one_line(d['name'])} (added {d['created_at']})" for d in docs] or ["no operators"]
    return _emit(args, docs, lines)


def cmd_operator_remove(args: argparse.Namespace) -> int:
    with _client(args) as client, _refusal_hint("engine-sync operator list lists them"):
        doc = client.post(f"/api/v1/operators/{quote(args.name, safe='')}/remove")
    lines = [f"operator {one_line(doc['name'])} removed; their console sessions ended"]
    return _emit(args, doc, lines)


def cmd_backup(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from enginekit.outputs import check_new_output, partial_prefix, publish
    from enginekit.scratch import create_owned_partial, sweep_owned_partials
    from sync_server.backup import backup_name

    if args.daily:
        with _client(args) as client:
            task = client.post("/api/v1/backups/daily", {"at": args.at})
        return _emit(args, task, [_task_line(task)])
    output = check_new_output(args.output or Path(backup_name(datetime.now(UTC))), force=args.force)
    with _client(args) as client:
        doc = client.post("/api/v1/backups")
        directory = output.path.parent
        sweep_owned_partials(directory, partial_prefix(output.path))
        fd, partial = create_owned_partial(directory, partial_prefix(output.path))
        os.close(fd)
        try:
            client.download(f"/api/v1/backups/{quote(doc['name'])}/file", partial)
            if partial.stat().st_size != doc["size"]:
                raise BackupIncomplete(
                    f"{output.path}: the backup download is incomplete",
                    hint="run engine-sync backup again",
                )
            publish(partial, output, "the backup")
        finally:
            partial.unlink(missing_ok=True)
        # The server keeps no second copy of every kit once this one is safe.
        client.request("DELETE", f"/api/v1/backups/{quote(doc['name'])}")
    kits = sum(1 for f in doc["files"] if str(f["name"]).startswith("kits/"))
    line = (
        f"backup written to {output.path}: database and {kits} kit(s) of Synchronizer "
        f"{doc['synchronizer_version']}, each with its sha256 in the manifest"
    )
    return _emit(args, {**doc, "path": str(output.path)}, [line])


class BackupIncomplete(EngineKitError):
    """The archive did not arrive whole (exit status 1)."""


def cmd_restore(args: argparse.Namespace) -> int:
    from sync_server.backup import restore_backup
    from sync_server.database import shown_url

    manifest = restore_backup(args.archive, args.data, args.database)
    kits = sum(1 for f in manifest.files if f.name.startswith("kits/"))
    doc = {
        "data": str(args.data),
        "synchronizer_version": manifest.synchronizer_version,
        "schema_revision": manifest.schema_revision,
        "created_at": manifest.created_at,
        "files": [vars(f) for f in manifest.files],
    }
    serve = f"engine-sync serve --data {args.data}"
    if args.database:
        serve += f" --database {shown_url(args.database)}"
    line = (
        f"restored Synchronizer {manifest.synchronizer_version} (backup of "
        f"{manifest.created_at}): database and {kits} kit(s) into {args.data}; start it with "
        f"{serve} (it writes a new admin token)"
    )
    return _emit(args, doc, [line])


def _site_lines(site: dict[str, Any]) -> list[str]:
    state = "running" if site["running"] else "stopped"
    version = f"Synchronizer {site['version']}" if site["version"] else "never contacted"
    lines = [
        f"site {site['id']}: {one_line(site['name'])}, {version}, {state}, last "
        f"contact {site['last_contact'] or 'never'}, {site['computers']} computer(s), kits "
        f"{', '.join(site['kits']) or '-'}"
    ]
    lines += [f"  {_task_line(t)}" for t in site["relays"]]
    return lines


def cmd_site_add(args: argparse.Namespace) -> int:
    with _client(args) as client:
        site = client.post("/api/v1/sites", {"name": args.name})
    # The site token is the one thing printed (as for token create): it is shown only once.
    return _emit(args, site, [site["token"]])


def cmd_sites(args: argparse.Namespace) -> int:
    with _client(args) as client:
        sites = client.get("/api/v1/sites")
    lines = [line for site in sites for line in _site_lines(site)] or ["no remote servers"]
    return _emit(args, sites, lines)


def cmd_upgrade_server(args: argparse.Namespace) -> int:
    with _client(args) as client:
        doc = client.post("/api/v1/server/upgrade", {"to": args.to, "force": args.force})
    lines = [
        f"Synchronizer {doc['previous']} -> {doc['synchronizer_version']}: backup "
        f"{doc['backup']} taken first (in the server's DATA/backups)"
    ]
    lines += [f"warning: forced past: {one_line(c)}" for c in doc["forced_past"]]
    lines += [f"note: {one_line(r)}" for r in doc["reschedule"]]
    lines.append(
        "next: republish every VM image (engine-sync publish VM) so it gets the new PV drivers"
    )
    return _emit(args, doc, lines)


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
    serve.add_argument(
        "--upstream",
        metavar="URL",
        help="run a remote (branch-office) server of this main server: computers registered "
        "with this one check in through it and download their kits from it",
    )
    serve.add_argument(
        "--upstream-token", metavar="T", help="with --upstream: the site token (site add)"
    )
    serve.add_argument(
        "--bandwidth",
        metavar="RATE",
        help="with --upstream: bytes per second for kits from the main server, a size such "
        "as 2M or 500kB (default: no limit)",
    )
    serve.add_argument(
        "--contact-interval",
        type=float,
        default=10.0,
        metavar="S",
        help="with --upstream: seconds between contacts with the main server (default 10)",
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
    site = command("site", "remote (branch-office) servers", None)
    site_sub = site.add_subparsers(dest="site_command", required=True, metavar="ACTION")
    site_add = command(
        "add", "add a remote server; prints its site token once", cmd_site_add, within=site_sub
    )
    site_add.add_argument("name", help="the site's name (printable, at most 200 characters)")
    command("sites", "list the remote servers: version, last contact, relays", cmd_sites)
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
    vms = command("vms", "VM images: each image's Users tab", cmd_vms)
    vms.add_argument("--user", help="only this user")
    publish = command("publish", "publish a new version of a VM image", cmd_publish)
    publish.add_argument("vm", help="VM image name")
    publish.add_argument("--kind", choices=["shared", "custom", "local"], help="a new image's kind")
    publish.add_argument("--user", nargs="+", metavar="NAME", help="assign it to these users")
    publish.add_argument(
        "--staged", action="store_true", help="only to the --user names (a test group) for now"
    )
    user = command("user", "the users VM images are assigned to", None)
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    user_add = command("add", "add a user on a computer", cmd_user_add, within=user_sub)
    user_add.add_argument("name", help="the user's login name (the guide's Name column)")
    user_add.add_argument(
        "--full-name", default="", help="the user's full name (the guide's Full Name column)"
    )
    user_add.add_argument(
        "--computer", type=int, required=True, metavar="ID", help="the computer the user is on"
    )
    op_group = command("operator", "named console operators (name and password)", None)
    op_sub = op_group.add_subparsers(dest="operator_command", required=True, metavar="ACTION")
    op_add = command("add", "add a console operator", cmd_operator_add, within=op_sub)
    op_add.add_argument("name", help="the operator's sign-in name")
    op_add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: type it, no echo)",
    )
    command("list", "list the console operators", cmd_operator_list, within=op_sub)
    op_remove = command(
        "remove", "remove an operator (their sessions end)", cmd_operator_remove, within=op_sub
    )
    op_remove.add_argument("name", help="the operator's name (engine-sync operator list)")
    backup = command("backup", "back up the database and the kits into one archive", cmd_backup)
    backup.add_argument("-o", "--output", type=Path, metavar="FILE", help="archive to write")
    backup.add_argument("--force", action="store_true", help="replace an existing FILE")
    backup.add_argument(
        "--daily", action="store_true", help="schedule the Daily Roll-Up Backup task instead"
    )
    backup.add_argument("--at", metavar="TIME", help="with --daily: ISO time (default 02:00Z)")
    restore = command(
        "restore", "restore a backup into a new data directory", cmd_restore, client=False
    )
    restore.add_argument("archive", type=Path, help="an archive made by engine-sync backup")
    restore.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="a new or empty data directory to restore into",
    )
    restore.add_argument(
        "--database",
        metavar="URL",
        help="a PostgreSQL backup: the new, empty database to load it into",
    )
    upgrade = command(
        "upgrade-server", "upgrade Synchronizer itself (after every Engine)", cmd_upgrade_server
    )
    upgrade.add_argument("--to", metavar="VERSION", help="default: the newest Engine kit")
    upgrade.add_argument(
        "--force", action="store_true", help="even though computers run an older Engine"
    )
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
