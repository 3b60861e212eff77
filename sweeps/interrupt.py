"""Stopping a sweep on Ctrl-C or SIGTERM: an object handed to whoever has to stop.

    >>> interrupt = Interrupt()
    >>> interrupt.requested
    False
    >>> interrupt.request(); interrupt.requested
    True

The first signal only sets a flag: the running trial raises `KeyboardInterrupt` from its next log
call (`objective.TrialLogger`), where the trainer is between steps. Raising inside the signal handler
itself can land in a finalizer, where Python prints "Exception ignored" and carries on training. A
second signal raises at once. SIGTERM (what `docker stop`, `kill` and schedulers send) is handled
like Ctrl-C, so every way a sweep is stopped closes its runs.
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was asked for."""
        if self._event.is_set():
            raise KeyboardInterrupt

    def _handler(self, signum, frame) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt
        self._event.set()
        print("thinker: stopping the running trial (Ctrl-C again to stop at once)", file=sys.stderr)

    def __enter__(self) -> Interrupt:
        """Route SIGINT and SIGTERM here (main thread only; a signal the shell ignores stays ignored)."""
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                previous = signal.getsignal(sig)
                if previous is signal.SIG_IGN and sig == signal.SIGINT:
                    continue  # started in the background: leave Ctrl-C as the shell wanted
                self._previous[sig] = previous
                signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def ignore_further(self) -> None:
        """While the last bookkeeping runs, a further signal must not cut it short."""
        if threading.current_thread() is threading.main_thread():
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)

