"""The interactive front end: each screen's view rendered as a questionary prompt in a terminal.

It only renders `installer.screens.View`s and hands the choices back to the controller
(`installer.frontends.api.Installer`); Back and Quit are extra choices where the step list
allows them. The progress screen is a rich progress bar fed by the engine's progress
callback. Ctrl-C before the summary is confirmed ends the run with nothing written. The one
check that needs the network, whether the Synchronizer server answers, is made here, before
the token is asked for.
"""

from __future__ import annotations

import sys
from typing import TextIO

import questionary
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from enginekit.errors import Interrupted
from enginekit.interrupts import PendingInterrupt, deferred_interrupt
from enginekit.text import wrap_block
from installer.addresses import parse_server, server_problem, unreachable
from installer.frontends.api import Installer
from installer.model import Screen
from installer.plan import InstallReport
from installer.validators import short

BACK = "__back__"
QUIT = "__quit__"


def _ask(question: questionary.Question, held: PendingInterrupt) -> object:
    """Ask `question`; a Ctrl-C held back while the screen was drawn ends it at once, as a
    Ctrl-C at the prompt would."""
    app = question.application

    def end_if_interrupted() -> None:
        if held.pending:
            app.exit(exception=KeyboardInterrupt, style="class:aborting")

    # Runs once the prompt has its own SIGINT handler: nothing falls between the two.
    app.pre_run_callables.append(end_if_interrupted)
    return question.unsafe_ask()


def _ask_choice(
    view_choices: list[questionary.Choice],
    message: str,
    default: str | None,
    held: PendingInterrupt,
) -> str:
    values = [c.value for c in view_choices]
    question = questionary.select(
        message,
        choices=view_choices,
        default=default if default in values else None,
        qmark=">",
    )
    return str(_ask(question, held))


def _ask_field(prompt: str, secret: bool, default: str, held: PendingInterrupt) -> str:
    if secret:
        return str(_ask(questionary.password(prompt, qmark=">"), held))
    return str(_ask(questionary.text(prompt, default=default, qmark=">"), held))


CHANGE_SERVER = "change"
KEEP_SERVER = "keep"


def _ask_server(console: Console, prompt: str, default: str, held: PendingInterrupt) -> str:
    """The Synchronizer server, checked before the token is asked for: a malformed address
    is asked again; one that does not answer (a TCP connect with a short timeout) is said
    plainly, and the user changes it or goes on with it (it may be reachable only later)."""
    server = default
    while True:
        server = _ask_field(prompt, False, server, held)
        problem = server_problem(server)
        if problem is not None:
            console.print(f"! server {short(server)}: {problem}", markup=False, style="bold red")
            continue
        address = parse_server(server)
        why = unreachable(address)
        if why is None:
            return server
        console.print(
            f"! The Synchronizer server {address.display} could not be reached ({why}).",
            markup=False,
            style="bold red",
        )
        choice = _ask_choice(
            [
                questionary.Choice(title="Change the server", value=CHANGE_SERVER),
                questionary.Choice(title="Use it anyway", value=KEEP_SERVER),
            ],
            "Server not reachable",
            CHANGE_SERVER,
            held,
        )
        if choice == KEEP_SERVER:
            return server


def _show(console: Console, title: str, text: str) -> None:
    console.rule(title)
    if text:
        # Wrapped here, not by rich: rich starts a wrapped line at column 0, so a long item
        # of an indented list (a VM, a note) would run into the lines around it.
        # markup off: a licence text or a disk path may contain [brackets].
        console.print("\n".join(wrap_block(text, console.width)), markup=False, highlight=False)


def _install_with_bar(installer: Installer, console: Console) -> InstallReport:
    with Progress(
        TextColumn("{task.description:<36}"),
        BarColumn(bar_width=40),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("starting", total=100.0)

        def progress(step: str, fraction: float) -> None:
            bar.update(task, completed=max(0.0, min(fraction, 1.0)) * 100.0, description=step)

        report = installer.install(progress)
        # From here to the next prompt a Ctrl-C is held back and raised at a clean point: the
        # bar's teardown and the finish screen must not swallow it.
        with deferred_interrupt():
            bar.update(task, completed=100.0, description="done")
            bar.stop()
    return report


def run_interactive(installer: Installer, stream: TextIO | None = None) -> InstallReport | None:
    """Show screens until the run ends. Returns the engine's report, or None if the user
    quit or declined the licence (nothing was written then)."""
    console = Console(file=stream or sys.stdout, highlight=False)
    try:
        while not installer.screen.terminal:
            if installer.screen is Screen.PROGRESS:
                view = installer.view
                _show(console, view.title, view.text)
                _install_with_bar(installer, console)
                continue
            _one_screen(installer, console)
    except KeyboardInterrupt:
        if installer.report is None and installer.screen is not Screen.PROGRESS:
            raise Interrupted(
                "installation cancelled; nothing was written to the target",
                hint="run engine-install again when you are ready",
            ) from None
        raise
    if installer.screen is Screen.ABORTED:
        console.print(installer.message or "Installation cancelled; nothing was written.")
        return None
    return installer.report


def _one_screen(installer: Installer, console: Console) -> None:
    """One screen, with Ctrl-C held back wherever its prompts do not handle it themselves
    (while it is drawn, while a prompt starts): raised when the screen ends, or by the next
    prompt as soon as it runs, and never lost."""
    with deferred_interrupt() as held:
        _show_and_ask(installer, console, held)


def _show_and_ask(installer: Installer, console: Console, held: PendingInterrupt) -> None:
    view = installer.view
    _show(console, view.title, view.text)
    choices = [questionary.Choice(title=c.label, value=c.value) for c in view.choices]
    if view.can_back:
        choices.append(questionary.Choice(title="< Back", value=BACK))
    if view.can_quit:
        choices.append(questionary.Choice(title="Quit (nothing is written)", value=QUIT))
    value = _ask_choice(choices, view.title, view.default, held)
    if value == BACK:
        installer.back()
    elif value == QUIT:
        installer.quit()
    else:
        fields: dict[str, str] = {}
        for field in view.fields.get(value, ()):
            if field.name == "server":
                fields[field.name] = _ask_server(console, field.prompt, field.default, held)
            else:
                fields[field.name] = _ask_field(field.prompt, field.secret, field.default, held)
        installer.choose(value, **fields)
    if installer.screen is view.screen and installer.message:
        console.print(f"! {installer.message}", markup=False, style="bold red")
