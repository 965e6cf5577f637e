"""Django's SQLite backend, with a process-wide queue for write transactions.

SQLite allows one writer at a time. A connection that finds the database locked retries
on SQLite's own schedule, sleeping up to 100 ms between tries however soon the lock is
free: with many replies being saved while people send messages, a send could sleep
for hundreds of milliseconds behind writes that took one. Within a process, write
transactions (BEGIN IMMEDIATE) therefore queue on a lock of ours, which hands over the
moment the writer before commits; SQLite's retrying is left for writers in other
processes (manage.py commands, a second server on the same file).
"""

from __future__ import annotations

import threading
from typing import Any

from django.db.backends.sqlite3 import base
from django.db.utils import OperationalError

# One per database file: connections to different files never wait for each other.
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_write_lock = False

    def _write_lock(self) -> threading.Lock:
        return _lock_for(str(self.settings_dict["NAME"]))

    def _start_transaction_under_autocommit(self) -> None:
        lock = self._write_lock()
        # The same patience as SQLite's own (the `timeout` option), then the same error.
        timeout = float(self.settings_dict.get("OPTIONS", {}).get("timeout", 5))
        if not lock.acquire(timeout=timeout):
            raise OperationalError("database is locked")
        self._holds_write_lock = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._release_write_lock()
            raise

    def _release_write_lock(self) -> None:
        if self._holds_write_lock:
            self._holds_write_lock = False
            self._write_lock().release()

    def _commit(self) -> Any:
        try:
            return super()._commit()  # type: ignore[misc]
        finally:
            self._release_write_lock()

    def _rollback(self) -> Any:
        try:
            return super()._rollback()  # type: ignore[misc]
        finally:
            self._release_write_lock()

    def _close(self) -> Any:
        try:
            return super()._close()  # type: ignore[misc]
        finally:
            self._release_write_lock()
