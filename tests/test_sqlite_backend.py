"""On SQLite, write transactions of one process queue on a lock that hands over at commit,
rollback or close; a writer that waits longer than the database's timeout gets SQLite's
own error."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper as StockWrapper

from conversations.models import Conversation
from tests.support.factories import UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's backend only"),
]


def _lock() -> threading.Lock:
    from chatsite.sqlite.base import _lock_for

    return _lock_for(str(connection.settings_dict["NAME"]))


def _in_thread(work: Callable[[], None]) -> BaseException | None:
    """Run `work` on another thread with its own connection; what it raised, if anything."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            raised.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return raised[0] if raised else None


def test_the_site_uses_the_queueing_backend() -> None:
    assert connection.settings_dict["ENGINE"] == "chatsite.sqlite"
    assert isinstance(connections["default"], StockWrapper)
    assert connection.vendor == "sqlite"


def test_a_transaction_holds_the_lock_until_commit() -> None:
    user = UserFactory(username="alice")
    assert not _lock().locked()
    with transaction.atomic():
        Conversation.objects.create(owner=user, title="one")
        assert _lock().locked()
        with transaction.atomic():  # a savepoint: the same hold
            Conversation.objects.create(owner=user, title="two")
        assert _lock().locked()
    assert not _lock().locked()
    assert Conversation.objects.count() == 2


def test_a_failed_transaction_rolls_back_and_releases_the_lock() -> None:
    user = UserFactory(username="alice")

    def fail() -> None:
        with transaction.atomic():
            Conversation.objects.create(owner=user, title="lost")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail()
    assert not _lock().locked()
    assert not Conversation.objects.exists()


def test_closing_a_connection_mid_transaction_releases_the_lock() -> None:
    def work() -> None:
        connections["default"].set_autocommit(
            False, force_begin_transaction_with_broken_autocommit=True
        )
        assert _lock().locked()
        connections["default"].close()

    assert _in_thread(work) is None
    assert not _lock().locked()


def test_a_second_writer_waits_for_the_first_then_writes() -> None:
    user = UserFactory(username="alice")
    first_holds, first_may_commit = threading.Event(), threading.Event()

    def first() -> None:
        with transaction.atomic():
            Conversation.objects.create(owner=user, title="first")
            first_holds.set()
            first_may_commit.wait(10)

    holder = threading.Thread(target=lambda: (first(), connections.close_all()))
    holder.start()
    assert first_holds.wait(10)
    order: list[str] = []

    def second() -> None:
        with transaction.atomic():
            order.append("second in")
            Conversation.objects.create(owner=user, title="second")

    waiter = threading.Thread(target=lambda: (second(), connections.close_all()))
    waiter.start()
    waiter.join(0.3)
    assert order == []  # still waiting behind the first
    first_may_commit.set()
    holder.join(10)
    waiter.join(10)
    assert order == ["second in"]
    assert sorted(Conversation.objects.values_list("title", flat=True)) == ["first", "second"]


def test_a_writer_waiting_longer_than_the_timeout_gets_database_is_locked() -> None:
    user = UserFactory(username="alice")
    options = connection.settings_dict["OPTIONS"]
    saved = options.get("timeout")
    with transaction.atomic():
        Conversation.objects.create(owner=user, title="holder")

        def impatient() -> None:
            connections["default"].settings_dict["OPTIONS"]["timeout"] = 0.2
            with transaction.atomic():
                Conversation.objects.create(owner=user, title="never")

        try:
            raised = _in_thread(impatient)
        finally:
            options["timeout"] = saved
    assert isinstance(raised, OperationalError)
    assert "database is locked" in str(raised)
    assert list(Conversation.objects.values_list("title", flat=True)) == ["holder"]
