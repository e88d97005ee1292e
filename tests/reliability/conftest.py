"""Shared scaffolding for the reliability tests: how a command's outcome is judged,
a watchdog against hangs, the console scripts, and a small installer medium built once.

Every fuzz and interruption test asks the same question of a command: did it end with exit
status 0, or with exactly one `error:` line (plus an optional `hint:` and indented detail
lines), and never with a traceback or an "internal error" (our own last line of defence in
`enginekit.cli`, which always means a bug)? `assert_clean_outcome` is that question, asked
in one place so that every test judges the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import strategies as st

from enginekit.errors import HostError
from enginekit.process import run

# The watchdog for in-process runs: generous, since the point is "never hangs", not speed.
IN_PROCESS_TIMEOUT = 60
SUBPROCESS_TIMEOUT = 120


def fuzz_examples(default: int) -> int:
    """Hypothesis examples for a fuzz test: `default` (kept small for the suite's time budget)
    times ENGINEKIT_FUZZ_SCALE, for a longer hunt: ENGINEKIT_FUZZ_SCALE=20 pytest ..."""
    return max(1, default * int(os.environ.get("ENGINEKIT_FUZZ_SCALE", "1")))


@dataclass(frozen=True)
class CliOutcome:
    """What a command did: exit status and its output (text, undecodable bytes replaced)."""

    argv: tuple[str, ...]
    status: int
    out: str
    err: str

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit status {self.status}\n"
            f"--- stdout ---\n{self.out[-3000:]}\n--- stderr ---\n{self.err[-3000:]}"
        )


def error_lines(text: str) -> list[str]:
    # split("\n"), not splitlines(): a message may quote a U+0085 or U+2028 from the input,
    # which splitlines() would take for a line break although a terminal does not.
    return [line for line in text.split("\n") if line.startswith("error:")]


def assert_clean_outcome(outcome: CliOutcome, *, may_succeed: bool = True) -> None:
    """Exit 0 (when allowed), or one clear `error:` line; never a traceback or internal error.

    The lines of stderr around the error may be a `hint:` line and the indented list of an
    answer file's problems; nothing else (in particular no Python warning or log noise).
    """
    everything = outcome.out + outcome.err
    assert "Traceback" not in everything, outcome.describe()
    assert "internal error" not in everything, outcome.describe()
    assert outcome.status >= 0, f"killed by signal {-outcome.status}\n{outcome.describe()}"
    assert outcome.status != 70, outcome.describe()  # InternalError: a bug by definition
    if outcome.status == 0 and may_succeed:
        assert not error_lines(outcome.err), outcome.describe()
        return
    assert outcome.status != 0, outcome.describe()
    errors = error_lines(outcome.err)
    assert len(errors) == 1, outcome.describe()
    for line in outcome.err.split("\n"):
        assert line.startswith(("error:", "hint:", "  ")) or not line.strip(), (
            f"unexpected stderr line {line!r}\n{outcome.describe()}"
        )


class Hang(BaseException):
    """Raised by the watchdog. A BaseException so that no `except Exception` swallows it
    (the CLI frame turns ordinary exceptions into an 'internal error' line)."""


@contextmanager
def watchdog(seconds: float, what: str) -> Iterator[None]:
    """Fail with Hang if the body runs longer than `seconds` (main thread only, SIGALRM)."""

    def fire(_signum: int, _frame: FrameType | None) -> None:
        raise Hang(f"{what}: still running after {seconds:.0f} s (a hang)")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def console_script(name: str) -> Path:
    """The installed console script `name` next to this interpreter (the venv's bin/)."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        pytest.skip(f"console script {name} is not installed in {script.parent} (tools/setup)")
    return script


def run_console(
    name: str, *args: object, timeout: float = SUBPROCESS_TIMEOUT, env: dict[str, str] | None = None
) -> CliOutcome:
    """Run a console script to completion; a run longer than `timeout` fails the test."""
    argv = [str(console_script(name)), *map(str, args)]
    try:
        proc = run(argv, check=False, timeout=timeout, env=env)
    except HostError as exc:
        pytest.fail(f"{' '.join(argv)}: {exc.message} (a hang)")
    return CliOutcome(
        tuple(argv),
        proc.returncode,
        (proc.stdout or b"").decode("utf-8", "replace"),
        (proc.stderr or b"").decode("utf-8", "replace"),
    )


def run_in_process(
    prog: str,
    main: Callable[[Sequence[str]], int],
    argv: Sequence[object],
    capsys: pytest.CaptureFixture[str],
) -> CliOutcome:
    """Call a CLI's `main(argv)` in this process under the watchdog, capturing its output."""
    args = [str(a) for a in argv]
    capsys.readouterr()
    with watchdog(IN_PROCESS_TIMEOUT, f"{prog} {' '.join(args)}"):
        try:
            status = main(args)
        except SystemExit as exc:  # argparse usage errors exit; judged like any exit
            status = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return CliOutcome((prog, *args), status, captured.out, captured.err)


def file_sha256(path: Path) -> str:
    """Plain SHA-256 of a (small) file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- a small installer medium -------------------------------------------------------------------

# Extra documentation files make the manifest a few KiB long, so that in-place manifest
# mutations have room for deeply nested or very long JSON values.
_EXTRA_FILES = 40


def write_tiny_payload(root: Path, version: str = "5.0.0") -> Path:
    """A payload tree with a fake kernel and initrd: it builds and verifies, it does not boot."""
    from media.payload_tree import manifest_for_tree, write_manifest

    files = {
        "boot/vmlinuz": b"not a kernel\n",
        "boot/initrd.img": b"not an initrd\n",
        "engine/EULA.txt": b"You agree.\n",
        "engine/keyboards.json": json.dumps({"us": "English (US)"}).encode(),
        "system/vmlinuz": b"k\n",
        "system/initrd.img": b"i\n",
        "system/root/etc/motd": b"tiny\n",
    }
    for index in range(_EXTRA_FILES):
        files[f"engine/docs/note-{index:02d}.txt"] = f"note {index}\n".encode()
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = manifest_for_tree(
        root,
        version=version,
        upgrade_from=["4.5.0"],
        pv_drivers=version,
        layout="gpt-ab",
        keyboards=["us"],
    )
    write_manifest(root, manifest)
    return root


@pytest.fixture(scope="session")
def tiny_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small hybrid installer ISO (about 5 MiB) built by our own builder. Read-only."""
    from media.iso_builder import HybridIsoBuilder

    where = tmp_path_factory.mktemp("tiny-iso")
    payload = write_tiny_payload(where / "payload")
    return HybridIsoBuilder(payload).build(where / "tiny-5.0.0.iso").path


# --- JSON that is wrong in the usual ways ----------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

# Documents each of which has caught some JSON reader somewhere: recursion limits, Python's
# 4300-digit int limit, bad UTF-8, a UTF-16 or UTF-8 BOM, lone surrogates, control characters
# that a message would print raw (a line break that fakes a second `error:` line, an escape).
NASTY_JSON: tuple[bytes, ...] = (
    b"",
    b"   ",
    b"null",
    b"[]",
    b'"Engine"',
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 1500 + b"1" + b"}" * 1500,
    b'{"version": ' + b"1" * 5000 + b"}",
    b'{"version": 1e999999}',
    b'{"version": NaN, "files": Infinity}',
    b'{"version": "\\ud800"}',
    b'{"product": "Engine", "product": "Engine"}',
    b"\xff\xfe{\x00}\x00",
    b"\xef\xbb\xbf{}",
    b'{"version": "5.0.0\xff"}',
    b'{"files": [{"path": "\\u0000", "size": 1, "sha256": "00"}]}',
    b'{"version": "5.0.0", "\\nerror: injected": 1}',
    b'{"version": "5.0.0\\u001b[2J"}',
)


def json_mutation(doc: object, draw: st.DrawFn) -> tuple[str, bytes]:
    """One structured change to a JSON object (or a nasty document instead): (what, bytes)."""
    if not isinstance(doc, dict) or draw(st.integers(0, 4)) == 0:
        nasty = draw(st.sampled_from(NASTY_JSON))
        return f"replaced by {nasty[:40]!r}", nasty
    doc = dict(json.loads(json.dumps(doc)))  # a deep copy
    choice = draw(st.sampled_from(["delete", "set", "add"]))
    if choice == "delete" and doc:
        key = draw(st.sampled_from(sorted(doc)))
        del doc[key]
        what = f"without {key!r}"
    elif choice in ("set", "delete") and doc:
        key = draw(st.sampled_from(sorted(doc)))
        doc[key] = draw(json_values)
        what = f"{key!r} = {doc[key]!r}"
    else:
        key = draw(st.text(min_size=1, max_size=12))
        doc[key] = draw(json_values)
        what = f"unknown key {key!r}"
    if draw(st.booleans()):
        return what, json.dumps(doc).encode()
    # Raw non-ASCII text; a lone surrogate becomes bytes that are not UTF-8 at all.
    return what, json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


# --- the kill-point tally ("how many kill points were tried and how many survived") ---


# user property name -> heading of its block in the summary
