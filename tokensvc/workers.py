"""`TOKENSVC_WORKERS=N`: N token-service processes sharing the ports, under one supervisor.

Each worker is a forked copy of the supervisor running the one-process service with its
listeners bound with SO_REUSEPORT, so the kernel spreads new connections over the workers.
The supervisor serves nothing itself. It

* starts the first worker and waits until it listens, then the others. A worker that stops
  before it ever listened during this start (port taken, store unreachable: it printed its one
  line) stops everything, and the supervisor exits with that worker's status;
* restarts a worker that dies, after a delay that doubles with each quick death (0.25 s up to
  30 s, back to 0.25 s once a worker has lived 10 s), so a crash loop does not spin;
* forwards SIGHUP (re-read the keys file) to every worker;
* on SIGTERM or SIGINT forwards the signal, waits for every worker to drain and exit, and exits
  0; a worker still alive after `stop_timeout` is killed.

Workers ask the kernel for SIGTERM when the supervisor dies (Linux `PR_SET_PDEATHSIG`), so not
even a SIGKILLed supervisor leaves orphans holding the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import structlog

log = structlog.get_logger("tokensvc.workers")

# Runs one worker until it stops; calls its argument once the worker's listeners accept.
Target = Callable[[Callable[[], None]], None]

_SIGNALS = (signal.SIGCHLD, signal.SIGHUP, signal.SIGINT, signal.SIGTERM)


@dataclass(slots=True)
class _Worker:
    slot: int
    pid: int
    started: float
    ready_fd: int | None  # the read end of the pipe the worker writes to once it listens
    ready: bool = False
    hup_pending: bool = False  # a SIGHUP came before the worker could take it


def _ignore(signum: int, frame: object) -> None:
    """The Python-level handler; the signal number reaches the loop through the wakeup fd."""


class Supervisor:
    def __init__(
        self,
        count: int,
        target: Target,
        *,
        stop_timeout: float,
        min_backoff: float = 0.25,
        max_backoff: float = 30.0,
        stable_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count = count
        self._target = target
        self._stop_timeout = stop_timeout
        self._min_backoff, self._max_backoff = min_backoff, max_backoff
        self._stable_after = stable_after
        self._clock = clock
        self._workers: dict[int, _Worker] = {}  # by pid
        self._restart_at: dict[int, float] = {}  # slot -> when
        self._quick_deaths = [0] * count
        self._starting = True  # until every first worker listens
        self._launched = False  # the workers after the first one
        self._deadline: float | None = None  # set once stopping
        self._status = 0
        self._pid = os.getpid()
        self._sel = selectors.DefaultSelector()
        self._wake_r = self._wake_w = -1
        self._saved: dict[int, object] = {}

    # --- the supervisor's loop ------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped; returns the exit status."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._saved = {sig: signal.getsignal(sig) for sig in _SIGNALS}
        for sig in _SIGNALS:
            signal.signal(sig, _ignore)
        previous = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        log.info("workers starting", workers=self.count, supervisor_pid=self._pid)
        try:
            self._spawn(0)
            while True:
                status = self._step()
                if status is not None:
                    return status
        finally:
            signal.set_wakeup_fd(previous)
            for saved, handler in self._saved.items():
                signal.signal(saved, handler)  # type: ignore[arg-type]
            self._sel.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _step(self) -> int | None:
        timers = [*self._restart_at.values()]
        if self._deadline is not None:
            timers.append(self._deadline)
        timeout = max(0.0, min(timers) - self._clock()) if timers else None
        for key, _ in self._sel.select(timeout):
            if key.fd == self._wake_r:
                self._on_signals()
            else:
                self._on_ready(key.data)
        now = self._clock()
        if self._deadline is not None:
            if not self._workers:
                log.info("workers stopped", status=self._status)
                return self._status
            if now >= self._deadline:
                self._kill_all()
                return self._status
            return None
        for slot, when in list(self._restart_at.items()):
            if when <= now:
                del self._restart_at[slot]
                self._spawn(slot)
        return None

    def _on_signals(self) -> None:
        received: set[int] = set()
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._wake_r, 512):
                received.update(chunk)
        if signal.SIGCHLD in received:
            self._reap()
        for sig in (signal.SIGTERM, signal.SIGINT):
            if sig in received:
                self._stop(sig)
        if signal.SIGHUP in received and self._deadline is None:
            log.info("reloading keys in every worker")
            for worker in self._workers.values():
                if worker.ready:
                    self._send(worker, signal.SIGHUP)
                else:
                    worker.hup_pending = True

    def _on_ready(self, worker: _Worker) -> None:
        assert worker.ready_fd is not None
        data = os.read(worker.ready_fd, 16)
        self._sel.unregister(worker.ready_fd)
        os.close(worker.ready_fd)
        worker.ready_fd = None
        if not data:  # it died before listening; SIGCHLD tells the rest
            return
        worker.ready = True
        log.info("worker ready", slot=worker.slot, pid=worker.pid)
        if worker.hup_pending:
            self._send(worker, signal.SIGHUP)
        if self._deadline is not None:
            return
        if not self._launched:
            self._launched = True
            for slot in range(1, self.count):
                self._spawn(slot)
        if self._starting and sum(w.ready for w in self._workers.values()) == self.count:
            self._starting = False
            log.info("workers ready", workers=self.count)

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._workers.pop(pid, None)
            if worker is None:
                continue
            if worker.ready_fd is not None:
                self._sel.unregister(worker.ready_fd)
                os.close(worker.ready_fd)
                worker.ready_fd = None
            status = os.waitstatus_to_exitcode(wait_status)
            if self._deadline is not None:
                log.info("worker stopped", slot=worker.slot, pid=pid, status=status)
            elif self._starting and not worker.ready:
                log.error("worker failed to start", slot=worker.slot, pid=pid, status=status)
                self._status = status if status > 0 else 1
                self._stop(signal.SIGTERM)
            else:
                self._schedule_restart(worker, status)

    def _schedule_restart(self, worker: _Worker, status: int) -> None:
        now = self._clock()
        if now - worker.started >= self._stable_after:
            self._quick_deaths[worker.slot] = 0
        delay = min(self._max_backoff, self._min_backoff * 2 ** self._quick_deaths[worker.slot])
        self._quick_deaths[worker.slot] += 1
        self._restart_at[worker.slot] = now + delay
        log.warning(
            "worker died; restarting it",
            slot=worker.slot,
            pid=worker.pid,
            status=status,
            restart_in=round(delay, 3),
        )

    def _stop(self, sig: signal.Signals) -> None:
        if self._deadline is None:
            self._deadline = self._clock() + self._stop_timeout
            self._restart_at.clear()
            log.info("stopping workers", signal=sig.name)
        for worker in self._workers.values():
            self._send(worker, sig)

    def _kill_all(self) -> None:
        for worker in list(self._workers.values()):
            log.error("worker did not stop in time; killing it", slot=worker.slot, pid=worker.pid)
            self._send(worker, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
        self._workers.clear()

    @staticmethod
    def _send(worker: _Worker, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, sig)

    # --- a worker -------------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        ready_r, ready_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # or the child writes the parent's buffer too
            stream.flush()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            self._child(ready_w)
        os.close(ready_w)
        worker = _Worker(slot, pid, self._clock(), ready_r)
        self._workers[pid] = worker
        self._sel.register(ready_r, selectors.EVENT_READ, worker)
        log.info("worker started", slot=slot, pid=pid)

    def _child(self, ready_w: int) -> NoReturn:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig, handler in self._saved.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the service handles it
            self._sel.close()
            for fd in (
                self._wake_r,
                self._wake_w,
                *(w.ready_fd for w in self._workers.values() if w.ready_fd is not None),
            ):
                os.close(fd)
            _die_with_parent(self._pid)

            def ready() -> None:
                os.write(ready_w, b"1")
                os.close(ready_w)

            self._target(ready)
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(status)


def _die_with_parent(parent: int) -> None:
    """Linux: have the kernel send this process SIGTERM when its supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before we asked
        raise SystemExit(1)


def supervise(count: int, target: Target, *, stop_timeout: float) -> int:
    return Supervisor(count, target, stop_timeout=stop_timeout).run()
