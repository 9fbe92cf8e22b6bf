"""Turns: callers served one at a time in the order they arrived, from threads or asyncio.

A session's calls must execute one at a time in the order they were issued: each call's
history is the calls before it. ``threading.Lock`` does not wake waiters in order, so a
caller takes a numbered ticket and waits until the counter reaches it. A ticket whose caller
gave up before its turn (an exception while waiting, a cancelled task) is skipped, so no
abandoned caller ever blocks the ones behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")


class TurnAbandoned(Exception):
    """The caller of this ticket gave up before its turn came (internal)."""


class Turns:
    """Numbered tickets, served in order: ``with turns.turn(): ...`` from any thread."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next = 0  # the next ticket handed out
        self._serving = 0  # the ticket whose turn it is
        self._skipped: set[int] = set()  # given up before their turn
        self._started: set[int] = set()  # handed to a thread that waits for or holds its turn
        self._sleepers = 0  # threads in wait(): only then does a release need to wake anyone

    def take(self) -> int:
        """A ticket: its place in the order is now (call this where the call is issued)."""
        with self._cond:
            ticket = self._next
            self._next += 1
            return ticket

    def ready(self, ticket: int) -> bool:
        """Whether it is ``ticket``'s turn (then its holder must :meth:`release` it)."""
        with self._cond:
            return self._serving == ticket

    def enter(self) -> int:
        """Take a ticket and block until its turn (the fast path of :meth:`turn`); the
        caller must :meth:`release` it. An exception while waiting gives it up."""
        with self._cond:
            ticket = self._next
            self._next += 1
            if self._serving == ticket:
                return ticket
        try:
            self.wait(ticket)
        except BaseException:
            self.release(ticket)
            raise
        return ticket

    def wait(self, ticket: int) -> None:
        """Block until it is ``ticket``'s turn; TurnAbandoned if it was given up meanwhile."""
        with self._cond:
            self._sleepers += 1
            try:
                self._cond.wait_for(lambda: self._serving >= ticket or ticket in self._skipped)
            finally:
                self._sleepers -= 1
            if ticket in self._skipped or ticket < self._serving:
                raise TurnAbandoned(ticket)

    def release(self, ticket: int) -> None:
        """End ``ticket``'s turn, or give it up before it came. Idempotent."""
        with self._cond:
            self._started.discard(ticket)
            if ticket == self._serving:
                self._serving += 1
                while self._serving in self._skipped:
                    self._skipped.remove(self._serving)
                    self._serving += 1
            elif ticket > self._serving:
                self._skipped.add(ticket)
            if self._sleepers:
                self._cond.notify_all()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Take a ticket and hold its turn for the block."""
        ticket = self.enter()
        try:
            yield
        finally:
            self.release(ticket)

    async def in_thread(self, ticket: int, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread during ``ticket``'s turn; the turn ends with it.

        If the awaiting task is cancelled before the thread took over, the ticket is given up
        here; once the thread holds it, the thread ends the turn when ``fn`` returns.
        """

        def job() -> T:
            with self._cond:
                if ticket in self._skipped or ticket < self._serving:
                    raise TurnAbandoned(ticket)
                self._started.add(ticket)
            try:
                self.wait(ticket)
                return fn()
            finally:
                self.release(ticket)

        try:
            return await asyncio.to_thread(job)
        except asyncio.CancelledError:
            self._abandon(ticket)
            raise

    def _abandon(self, ticket: int) -> None:
        with self._cond:
            if ticket in self._started and self._serving == ticket:
                return  # its thread holds the turn and ends it
            if ticket in self._started:
                self._skipped.add(ticket)  # its thread still waits: wake it to give up
                self._cond.notify_all()
                return
        self.release(ticket)
