"""A real terminal for tests: the real `planexec` command (or a shell) in tmux or a pty.

    with open_terminal(tmp_path, width=80) as term:
        term.start(["planexec", "demo"], env)
        term.wait_for("approve")
        term.type("a")                 # the text, then Enter
        term.press("C-c")              # tmux key names: Enter, Tab, C-c, C-d
        screen = term.wait_exit()      # the exit code is term.exit_code
        assert "status: completed" in term.transcript()

`TmuxTerminal` runs the command in a private tmux server (its own socket, no status
line, the pane kept after the command exits so that its exit code can be read), and
reads the screen with `capture-pane`. `PtyTerminal` runs it on a pseudo-terminal
and keeps the screen with `pyte`, a terminal emulator; it is the fallback where tmux
is missing. Both show what a person would see: rich's cursor movements, redraws and
wrapping included.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
WAIT = 30.0
"""Seconds a wait may take before the test fails with the screen it saw (a busy CI)."""

try:  # the fallback needs the pyte terminal emulator (a dev dependency)
    import pyte
except ImportError:  # pragma: no cover - the dev environment has it
    pyte = None


def backends() -> list[str]:
    """The terminal backends this machine can run: "tmux", "pty"."""
    found = []
    if shutil.which("tmux"):
        found.append("tmux")
    if pyte is not None:
        found.append("pty")
    return found


def command_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment for `planexec` in a terminal: this venv first, nothing that sets
    the width (the terminal does), UTF-8, no provider keys, `PLANEXEC_HOME` at `home`."""
    drop = ("COLUMNS", "LINES", "OPENAI_API_KEY", "OPENAI_BASE_URL", "VISUAL", "EDITOR")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        PLANEXEC_HOME=str(home),
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
        TERM="xterm-256color",
        EDITOR="false",
        HOME=str(home.parent),
    )
    env.update(extra)
    return env


class Terminal(Protocol):
    """What the tests use of a terminal."""

    width: int
    exit_code: int | None

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        """Run `argv` in the terminal."""

    def type(self, text: str, *, enter: bool = True) -> None:
        """Type `text` (then Enter)."""

    def press(self, *keys: str) -> None:
        """Press keys by tmux name: Enter, Tab, C-c, C-d."""

    def screen(self) -> str:
        """What the screen shows now, line by line."""

    def transcript(self) -> str:
        """Everything shown so far, scrolled-off lines included."""

    def running(self) -> bool:
        """Whether the command has not exited yet."""

    def close(self) -> None:
        """Stop the command and the terminal."""


class _Waits:
    """Waiting on a terminal: shared by both backends."""

    exit_code: int | None = None

    def transcript(self) -> str:
        raise NotImplementedError

    def running(self) -> bool:
        raise NotImplementedError

    def wait_for(self, pattern: str, *, timeout: float = WAIT, count: int = 1) -> str:
        """The transcript once `pattern` (a regex) appears `count` times in it."""
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            text = self.transcript()
            if len(compiled.findall(text)) >= count:
                return text
            if time.monotonic() > deadline or (not self.running() and self._settled(text)):
                raise AssertionError(f"{pattern!r} not on the screen; it shows:\n{text}")
            time.sleep(0.05)

    def _settled(self, text: str) -> bool:
        time.sleep(0.2)  # the last output of a command that exited may still be arriving
        return self.transcript() == text

    def wait_exit(self, *, timeout: float = WAIT) -> int:
        """The command's exit code, once it has exited."""
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                raise AssertionError(f"the command did not exit; the screen:\n{self.transcript()}")
            time.sleep(0.05)
        assert self.exit_code is not None
        return self.exit_code


_TMUX_CONF = """\
set -g remain-on-exit on
set -g status off
set -g history-limit 20000
set -g default-terminal screen
set -g set-clipboard on
"""


class TmuxTerminal(_Waits):
    """A tmux pane of `width` x `height`, on a tmux server of its own."""

    def __init__(self, width: int = 80, height: int = 40) -> None:
        self.width, self.height = width, height
        # A short folder: unix socket paths are limited to about 100 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="pxterm-"))
        self._socket = self._dir / "s"
        (self._dir / "tmux.conf").write_text(_TMUX_CONF)
        self._env: dict[str, str] = {}

    def _tmux(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self._socket), "-f", str(self._dir / "tmux.conf"), *args],
            capture_output=True,
            text=True,
            env=self._env or None,
            timeout=30,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        """Run `argv` in a new pane; the tmux server, and so the pane, gets `env`."""
        self._env = dict(env)
        place = ["-c", str(cwd)] if cwd else []
        self._tmux(
            "new-session", "-d", "-s", "t", "-x", str(self.width), "-y", str(self.height),
            *place, "--", *argv,
        )  # fmt: skip

    def type(self, text: str, *, enter: bool = True) -> None:
        """Type `text` literally (then Enter)."""
        if text:
            self._tmux("send-keys", "-t", "t", "-l", text)
        if enter:
            self._tmux("send-keys", "-t", "t", "Enter")

    def press(self, *keys: str) -> None:
        """Press keys by tmux name."""
        self._tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        """The visible pane."""
        return self._tmux("capture-pane", "-p", "-t", "t")

    def transcript(self) -> str:
        """The pane and its scrollback, trailing blank lines dropped."""
        return self._tmux("capture-pane", "-p", "-S", "-", "-t", "t").rstrip("\n") + "\n"

    def running(self) -> bool:
        """Whether the pane's command is alive; records its exit code when it is not."""
        state = self._tmux(
            "display-message", "-p", "-t", "t",
            "#{pane_dead} #{pane_dead_status} #{pane_dead_signal}",
        )  # fmt: skip
        dead, status, signal_number = [*state.split(), "", "", ""][:3]
        if dead == "1" and not (status or signal_number):
            # Just died: tmux fills in how once it reaps the process. On a busy machine
            # tmux 3.3 was seen to leave it a zombie for a long while, so read the exit
            # status the kernel keeps for a zombie (the last field of /proc/PID/stat).
            code = _zombie_status(self._tmux("display-message", "-p", "-t", "t", "#{pane_pid}"))
            if code is None:
                return True
            self.exit_code = code
            return False
        if dead == "1":
            # Killed by a signal, the code is reported as a shell would: 128 + its number.
            self.exit_code = int(status) if status else 128 + int(signal_number or 0)
            return False
        return True

    def buffers(self) -> str:
        """tmux's paste buffers: where an OSC 52 clipboard write that got through lands."""
        return self._tmux("list-buffers", check=False)

    def close(self) -> None:
        """Kill the tmux server (and the command, if it still runs)."""
        self._tmux("kill-server", check=False)
        shutil.rmtree(self._dir, ignore_errors=True)


def _zombie_status(pid_text: str) -> int | None:
    """A zombie process's exit code, as a shell reports it (128 + signal if killed)."""
    try:
        fields = Path(f"/proc/{int(pid_text)}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    if fields[0] != "Z":
        return None
    status = int(fields[-1])  # as waitpid reports it
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


_KEYS = {"Enter": b"\r", "Tab": b"\t", "C-c": b"\x03", "C-d": b"\x04", "Escape": b"\x1b"}


class PtyTerminal(_Waits):
    """A pseudo-terminal of `width` x `height`, its screen kept by the pyte emulator."""

    def __init__(self, width: int = 80, height: int = 40) -> None:
        if pyte is None:
            raise RuntimeError("the pty terminal needs the pyte package")
        self.width, self.height = width, height
        self._screen = pyte.HistoryScreen(width, height, history=20000)
        self._stream = pyte.ByteStream(self._screen)
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._fd: int | None = None
        self._reader: threading.Thread | None = None

    def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        """Run `argv` as the session leader of a new pty."""
        import fcntl
        import pty
        import termios

        program = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
        pid, fd = pty.fork()
        if pid == 0:  # the child: size the terminal, then become the command
            try:
                size = struct.pack("HHHH", self.height, self.width, 0, 0)
                fcntl.ioctl(0, termios.TIOCSWINSZ, size)
                if cwd:
                    os.chdir(cwd)
                os.execve(program, list(argv), dict(env))
            finally:
                os._exit(127)
        self._pid, self._fd = pid, fd
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._fd is not None
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._stream.feed(data)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        os.write(self._fd, data)

    def type(self, text: str, *, enter: bool = True) -> None:
        """Type `text` (then Enter)."""
        self._write(text.encode() + (b"\r" if enter else b""))

    def press(self, *keys: str) -> None:
        """Press keys by tmux name."""
        for key in keys:
            self._write(_KEYS[key])

    def screen(self) -> str:
        """The visible screen."""
        with self._lock:
            return "\n".join(line.rstrip() for line in self._screen.display) + "\n"

    def transcript(self) -> str:
        """The screen and the lines scrolled off it, trailing blank lines dropped."""
        with self._lock:
            top = [
                "".join(line[x].data for x in range(self.width)).rstrip()
                for line in self._screen.history.top
            ]
            lines = top + [line.rstrip() for line in self._screen.display]
        return "\n".join(lines).rstrip("\n") + "\n"

    def running(self) -> bool:
        """Whether the command is alive; records its exit code when it is not."""
        if self._pid is None:
            return False
        if self.exit_code is not None:
            return False
        pid, status = os.waitpid(self._pid, os.WNOHANG)
        if pid == 0:
            return True
        self.exit_code = os.waitstatus_to_exitcode(status)
        if self.exit_code < 0:  # killed by a signal, as a shell reports it
            self.exit_code = 128 - self.exit_code
        if self._reader is not None:
            self._reader.join(timeout=2)
        return False

    def close(self) -> None:
        """Stop the command and close the terminal."""
        if self._pid is not None and self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


@contextlib.contextmanager
def open_terminal(backend: str, width: int = 80, height: int = 40) -> Iterator[Any]:
    """A terminal of the given backend ("tmux" or "pty"), closed afterwards."""
    term: TmuxTerminal | PtyTerminal = (
        TmuxTerminal(width, height) if backend == "tmux" else PtyTerminal(width, height)
    )
    try:
        yield term
    finally:
        term.close()
