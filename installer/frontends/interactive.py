"""The interactive front end: each screen's view shown in a terminal, one screen at a time.

It only renders `installer.screens.View`s and hands the choices back to the controller
(`installer.frontends.api.Installer`); Back and Quit are extra choices where the step list
allows them. Two renderers take the same screens: on a terminal that can draw, each screen is
drawn whole (`installer.frontends.fullscreen`: title bar, text, choices, footer, paging); on a
dumb terminal, or when output is not a terminal, the screens follow one another as a
transcript of questionary prompts with a rich progress bar. Ctrl-C before the summary is
confirmed ends the run with nothing written. The one check that needs the network, whether
the Synchronizer server answers, is made here, before the token is asked for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO

import questionary
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from enginekit.errors import Interrupted
from enginekit.interrupts import PendingInterrupt, deferred_interrupt
from enginekit.text import wrap_block
from installer.addresses import parse_server, server_problem, unreachable
from installer.frontends.api import Installer
from installer.frontends.fullscreen import BACK, QUIT, ScreenPrompter, ScreenTerminal
from installer.model import FinishAnswer, Screen
from installer.plan import InstallReport
from installer.screens import Choice, View
from installer.validators import short

BACK_LABEL = "< Back"
QUIT_LABEL = "Quit (nothing is written)"


@dataclass(frozen=True)
class InteractiveResult:
    """How the run ended: the engine's report (None: the user quit or declined the licence,
    nothing was written), and whether "Reboot now" was chosen on the finish screen, which
    the caller carries out (the host prints how to boot the disk; the live system reboots)."""

    report: InstallReport | None
    reboot: bool = False


class Prompter(Protocol):
    """What the installer loop needs from a renderer."""

    def show(self, view: View) -> None: ...

    def say(self, line: str) -> None: ...

    def choose(
        self, choices: Sequence[Choice], message: str, default: str | None, held: PendingInterrupt
    ) -> str: ...

    def field(
        self, prompt: str, secret: bool, default: str, held: PendingInterrupt
    ) -> str | None: ...

    def install(self, installer: Installer) -> InstallReport: ...


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


def _ask_server(
    prompter: Prompter, prompt: str, default: str, held: PendingInterrupt
) -> str | None:
    """The Synchronizer server, checked before the token is asked for: a malformed address
    is asked again; one that does not answer (a TCP connect with a short timeout) is said
    plainly, and the user changes it or goes on with it (it may be reachable only later).
    None: the user went back to the screen's choices."""
    server = default
    while True:
        typed = prompter.field(prompt, False, server, held)
        if typed is None:
            return None
        server = typed
        problem = server_problem(server)
        if problem is not None:
            prompter.say(f"! server {short(server)}: {problem}")
            continue
        address = parse_server(server)
        why = unreachable(address)
        if why is None:
            return server
        prompter.say(f"! The Synchronizer server {address.display} could not be reached ({why}).")
        choice = prompter.choose(
            [Choice(CHANGE_SERVER, "Change the server"), Choice(KEEP_SERVER, "Use it anyway")],
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


class TranscriptPrompter:
    """The screens as a transcript: a rule with the title, the text, a questionary prompt."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def show(self, view: View) -> None:
        _show(self._console, view.title, view.text)

    def say(self, line: str) -> None:
        self._console.print(line, markup=False, style="bold red")

    def choose(
        self, choices: Sequence[Choice], message: str, default: str | None, held: PendingInterrupt
    ) -> str:
        offered = [questionary.Choice(title=c.label, value=c.value) for c in choices]
        return _ask_choice(offered, message, default, held)

    def field(self, prompt: str, secret: bool, default: str, held: PendingInterrupt) -> str:
        return _ask_field(prompt, secret, default, held)

    def install(self, installer: Installer) -> InstallReport:
        return _install_with_bar(installer, self._console)


def run_interactive(
    installer: Installer, stream: TextIO | None = None, *, terminal: ScreenTerminal | None = None
) -> InteractiveResult:
    """Show screens until the run ends. With `terminal`, the screens are drawn whole on it
    (the live system passes its console); without, on stdin/stdout when both are a terminal
    that can draw ($TERM not dumb), else as a transcript on `stream` (stdout)."""
    if terminal is None and stream is None:
        fds = (sys.stdin.fileno(), sys.stdout.fileno())
        if ScreenTerminal.usable(*fds, os.environ.get("TERM")):
            terminal = ScreenTerminal(*fds, encoding=sys.stdout.encoding or "utf-8")
    if terminal is None:
        console = Console(file=stream or sys.stdout, highlight=False)
        return _run(installer, TranscriptPrompter(console), console)
    screen = ScreenPrompter(terminal)
    screen.open()
    try:
        return _run(installer, screen, None)
    finally:
        screen.close()


def _run(installer: Installer, prompter: Prompter, console: Console | None) -> InteractiveResult:
    try:
        while not installer.screen.terminal:
            if installer.screen is Screen.PROGRESS:
                view = installer.view
                prompter.show(view)
                prompter.install(installer)
                continue
            _one_screen(installer, prompter)
    except KeyboardInterrupt:
        if installer.report is None and installer.screen is not Screen.PROGRESS:
            raise Interrupted(
                "installation cancelled; nothing was written to the target",
                hint="run engine-install again when you are ready",
            ) from None
        raise
    if installer.screen is Screen.ABORTED:
        line = installer.message or "Installation cancelled; nothing was written."
        if console is not None:
            console.print(line)
        else:
            print(line)
        return InteractiveResult(None)
    finish = installer.model.answer(Screen.FINISH)
    return InteractiveResult(
        installer.report, reboot=isinstance(finish, FinishAnswer) and finish.reboot
    )


def _one_screen(installer: Installer, prompter: Prompter) -> None:
    """One screen, with Ctrl-C held back wherever its prompts do not handle it themselves
    (while it is drawn, while a prompt starts): raised when the screen ends, or by the next
    prompt as soon as it runs, and never lost."""
    with deferred_interrupt() as held:
        _show_and_ask(installer, prompter, held)


def _show_and_ask(installer: Installer, prompter: Prompter, held: PendingInterrupt) -> None:
    view = installer.view
    prompter.show(view)
    if installer.message and installer.model.history[-2:-1] == (view.screen,):
        prompter.say(f"! {installer.message}")
    choices = list(view.choices)
    if view.can_back:
        choices.append(Choice(BACK, BACK_LABEL))
    if view.can_quit:
        choices.append(Choice(QUIT, QUIT_LABEL))
    value = prompter.choose(choices, view.title, view.default, held)
    if value == BACK:
        installer.back()
    elif value == QUIT:
        installer.quit()
    else:
        fields: dict[str, str] = {}
        for field in view.fields.get(value, ()):
            if field.name == "server":
                typed = _ask_server(prompter, field.prompt, field.default, held)
            else:
                typed = prompter.field(field.prompt, field.secret, field.default, held)
            if typed is None:
                return  # Esc: the screen's choices again
            fields[field.name] = typed
        installer.choose(value, **fields)
