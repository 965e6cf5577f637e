"""A battery of hostile requests over every URL of the URLconf (walked from the resolver, so
a new URL is covered as soon as it exists): every method, absurd and other users' ids,
forms in other charsets, oversized fields, odd unicode. No answer is a 5xx or shows a
traceback, no one reads another user's data, and the victim's data is unchanged after.

The memory and time of the zip and JSON bombs, measured on a real server process, are in
test_hostile_bombs.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern

from conversations.models import Conversation, ImportJob, Message, UserLimits
from tests.support.factories import ConversationFactory, MessageFactory, ReplyFactory

SECRET = "The password is swordfish"

# Values put where an id goes. "victim" is the other user's real id (filled in per URL).
BAD_IDS = ["abc", "%00", "9" * 20, "-1", "0", "%ED%A0%80", "1e3"]
# Values put where any other path segment goes (an export format, an admin object id).
BAD_WORDS = ["json", "abc", "%00", "%ED%A0%80", "%E2%80%A8", "..%2F..%2Fetc%2Fpasswd"]

# Odd unicode: a lone surrogate (as UTF-8 would spell it), line and paragraph separators,
# next line, right-to-left override and mark, zero-width joiner, a NUL, a BOM.
ODD_UNICODE = "%ED%A0%80 %E2%80%A8 %E2%80%A9 %C2%85 %E2%80%AE %E2%80%8F %E2%80%8D %00 %EF%BB%BF"
HOSTILE_QUERY = (
    f"q={ODD_UNICODE}&page=99999999999999999999&before=abc&after=%00&offset=-1"
    "&cursor=%ED%A0%80&next=//evil.example/&fmt=%00"
)
# The form fields the views read, each given a hostile value.
FIELDS = [
    "content",
    "title",
    "model",
    "system_prompt",
    "temperature",
    "max_tokens",
    "q",
    "page",
    "before",
    "username",
    "password",
    "password1",
    "password2",
    "email",
    "next",
    "action",
    "_selected_action",
    "index",
    "file",
]


def urlencoded(value: str) -> bytes:
    return "&".join(f"{name}={value}" for name in FIELDS).encode()


@dataclass(frozen=True)
class Body:
    name: str
    content_type: str
    data: bytes


BODIES = [
    Body("plain", "application/x-www-form-urlencoded", urlencoded("hello")),
    Body("odd-unicode", "application/x-www-form-urlencoded", urlencoded(ODD_UNICODE)),
    Body("lone-surrogate", "application/x-www-form-urlencoded", urlencoded("%ED%A0%80")),
    Body(
        "utf-16",
        "application/x-www-form-urlencoded; charset=utf-16",
        "content=hi&title=x".encode("utf-16"),
    ),
    Body("utf-32", "application/x-www-form-urlencoded; charset=utf-32", b"\xff\xfe\x00\x00a"),
    Body("latin-1", "application/x-www-form-urlencoded; charset=latin-1", b"content=caf\xe9"),
    Body("bad-charset", "application/x-www-form-urlencoded; charset=no-such", b"content=x"),
    Body("invalid-utf8", "application/x-www-form-urlencoded", b"content=\xff\xfe\xc3\x28"),
    Body(
        "multipart-koi8",
        "multipart/form-data; boundary=XyZ; charset=koi8-r",
        b'--XyZ\r\nContent-Disposition: form-data; name="content"\r\n\r\n\xf0\xf2\r\n--XyZ--\r\n',
    ),
    Body("multipart-broken", "multipart/form-data; boundary=XyZ", b"--XyZ\r\ngarbage"),
    Body("multipart-no-boundary", "multipart/form-data", b"content=x"),
    Body("json", "application/json", json.dumps({n: "\ud800" for n in FIELDS}).encode()),
    # Each field far over any limit (a message is at most 20,000 characters), in all 1.9 MB.
    Body("oversized-fields", "application/x-www-form-urlencoded", urlencoded("x" * 100_000)),
    # Over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): Django refuses to read it.
    Body("oversized-body", "application/x-www-form-urlencoded", b"content=" + b"y" * 3_000_000),
]

# Answers a hostile request may get; anything 5xx fails, and so do these for another's data.
NOT_THEIRS = {302, 400, 403, 404, 405, 409, 413, 422}


def walk(
    patterns: list[URLPattern | URLResolver], prefix: tuple[Any, ...] = ()
) -> Iterator[tuple[Any, ...]]:
    """Every URL pattern of the URLconf as the chain of patterns leading to it."""
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, (*prefix, p.pattern))
        else:
            yield (*prefix, p.pattern)


_PARAM = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
# A regex pattern's named group, whose inside has no group of its own.
_GROUP = re.compile(r"\(\?P<(?P<name>\w+)>(?P<inner>[^()]*)\)")
_LITERAL = re.compile(r"[\w/.-]*")
# What a regex group is given: its alternatives when it lists them, else by its shape.
_REGEX_VALUES: dict[str, list[str]] = {}


def _regex_values(name: str, inner: str) -> list[str]:
    if re.fullmatch(r"[\w|]+", inner):
        return inner.split("|")
    if inner in (r"\d+", "[0-9]+"):
        return ["1", *BAD_IDS]
    return ["json", *BAD_WORDS]


def segments(chain: tuple[Any, ...]) -> list[tuple[str, str | None, str | None]]:
    """The pattern chain as [(literal text, parameter name, converter)], one per piece.

    A regex pattern's groups get the converter "regex" (their values in _REGEX_VALUES).
    A pattern the battery cannot build a URL for fails the test: teach it the new shape.
    """
    pieces: list[tuple[str, str | None, str | None]] = []
    for pattern in chain:
        if isinstance(pattern, RoutePattern):
            route = str(pattern._route)
            last = 0
            for m in _PARAM.finditer(route):
                pieces.append((route[last : m.start()], m["name"], m["converter"] or "str"))
                last = m.end()
            pieces.append((route[last:], None, None))
        elif isinstance(pattern, RegexPattern):
            regex = str(pattern._regex).removeprefix("^").removesuffix("$").removesuffix("\\Z")
            last = 0
            for m in _GROUP.finditer(regex):
                literal = regex[last : m.start()]
                assert _LITERAL.fullmatch(literal), f"cannot build a URL for {regex!r}"
                _REGEX_VALUES[m["name"]] = _regex_values(m["name"], m["inner"])
                pieces.append((literal, m["name"], "regex"))
                last = m.end()
            assert _LITERAL.fullmatch(regex[last:]), f"cannot build a URL for {regex!r}"
            pieces.append((regex[last:], None, None))
        else:
            raise AssertionError(f"unknown pattern {pattern!r}")
    return pieces


def urls_for(chain: tuple[Any, ...], ids: dict[str, str]) -> Iterator[tuple[str, bool]]:
    """Concrete paths for one pattern: (path, whether it names the victim's data).

    First every parameter at its victim value; then each parameter in turn given each
    hostile value, the others keeping theirs.
    """
    pieces = segments(chain)
    params = [(name, conv) for _, name, conv in pieces if name]

    def victim(name: str, conv: str | None) -> str:
        if conv == "regex":
            return ids.get(name, _REGEX_VALUES[name][0])
        return ids.get(name, ids["object_id"] if conv == "path" else "json")

    def build(values: dict[str, str]) -> str:
        return "/" + "".join(text + (values[name] if name else "") for text, name, _ in pieces)

    base = {name: victim(name, conv) for name, conv in params}
    names_victim = any(name in ids or conv == "path" for name, conv in params)
    yield build(base), names_victim
    for name, conv in params:
        if conv == "regex":
            hostile = _REGEX_VALUES[name][1:]
        elif conv in ("id", "int"):
            hostile = BAD_IDS
        elif conv == "path":  # the admin's object ids
            hostile = BAD_IDS + BAD_WORDS
        else:
            hostile = BAD_WORDS
        for value in hostile:
            yield build({**base, name: value}), False


def snapshot(user) -> dict[str, Any]:
    """Everything of `user`'s that another user's request could change."""
    return {
        "user": get_user_model().objects.filter(pk=user.pk).values().get(),
        "conversations": list(Conversation.objects.filter(owner=user).order_by("pk").values()),
        "messages": list(Message.objects.filter(conversation__owner=user).order_by("pk").values()),
        "jobs": list(ImportJob.objects.filter(owner=user).order_by("pk").values()),
        "limits": list(UserLimits.objects.filter(user=user).values()),
    }


@pytest.fixture
def victim_data(owner):
    conversation = ConversationFactory(owner=owner, title="Alice's plans")
    question = MessageFactory(conversation=conversation, content=SECRET)
    reply = ReplyFactory(conversation=conversation, parent=question, content="Noted, alice.")
    job = ImportJob.objects.create(owner=owner, filename="alice.zip", status="done")
    return {
        "conversation_id": str(conversation.pk),
        "message_id": str(reply.pk),
        "job_id": str(job.pk),
        # Admin pages take any object id as a path: the victim's conversation's.
        "object_id": str(conversation.pk),
        "user_id": str(owner.pk),
    }


def check(response, method: str, url: str, names_victim: bool, who: str) -> None:
    where = f"{who} {method} {url[:200]}"
    assert response.status_code < 500, where
    if isinstance(response, StreamingHttpResponse):
        # An export of the attacker's own data, or a stream: never the victim's.
        assert not names_victim or response.status_code in NOT_THEIRS, where
        return
    body = response.content
    assert b"Traceback" not in body, where
    assert b'File "/' not in body, where
    if who != "staff":  # staff read every conversation in the admin: that is their job
        assert SECRET.encode() not in body, where
        if names_victim:
            assert response.status_code in NOT_THEIRS, where


def battery(
    client: Client, ids: dict[str, str], *, who: str, admin_methods: tuple[str, ...], user=None
) -> int:
    """Run every request of the battery as `client` (logged in as `user`); returns how many
    were made. A request that logged the attacker out (a POST to a logout URL) is followed
    by a new login, so the rest of the battery still runs as that user."""
    made = 0
    patterns = list(walk(get_resolver().url_patterns))
    assert len(patterns) > 40, "the URLconf walk found too few URLs"
    for chain in patterns:
        is_admin = isinstance(chain[0], RoutePattern) and str(chain[0]._route) == "admin/"
        methods = admin_methods if is_admin else ("get", "post", "put", "delete")
        built = list(urls_for(chain, ids))
        assert built, chain
        for url, names_victim in built:
            for method in methods:
                if method == "get":
                    response = client.get(url, QUERY_STRING=HOSTILE_QUERY)
                else:
                    response = client.generic(
                        method.upper(), url, BODIES[0].data, BODIES[0].content_type
                    )
                check(response, method, url, names_victim, who)
                made += 1
        if user is not None and "_auth_user_id" not in client.session:
            client.force_login(user)
        # Every body, posted to the URL at its victim values (and to its first bad id).
        if "post" in methods:
            for url, names_victim in built[:2]:
                for body in BODIES[1:]:
                    response = client.generic("POST", url, body.data, body.content_type)
                    check(response, f"POST[{body.name}]", url, names_victim, who)
                    made += 1
            if user is not None and "_auth_user_id" not in client.session:
                client.force_login(user)
    return made


# Transactional: replies the attacker's own sends start are written by another thread.
@pytest.mark.django_db(transaction=True)
def test_no_hostile_request_over_any_url_is_a_server_error_or_touches_another_users_data(
    owner, stranger, staff, victim_data, fake_openai
):
    before = snapshot(owner)
    sessions_before = Session.objects.count()
    made = 0

    attackers: list[tuple[str, Client, tuple[str, ...], Any]] = []
    stranger_client = Client(raise_request_exception=True)
    stranger_client.force_login(stranger)
    attackers.append(("stranger", stranger_client, ("get", "post", "put", "delete"), stranger))
    attackers.append(("anonymous", Client(raise_request_exception=True), ("get", "post"), None))
    # Staff may change anyone's data through the admin: there, GET only (no 5xx, no
    # traceback); elsewhere they are a stranger like any other.
    staff_client = Client(raise_request_exception=True)
    staff_client.force_login(staff)
    attackers.append(("staff", staff_client, ("get",), staff))

    for who, client, admin_methods, user in attackers:
        made += battery(client, victim_data, who=who, admin_methods=admin_methods, user=user)

    assert made > 2000, made  # the battery really ran
    assert snapshot(owner) == before
    # No request logged the victim out or in (sessions: the three attackers' at most).
    assert Session.objects.count() <= sessions_before + 3


@pytest.mark.django_db(transaction=True)
def test_the_owner_attacking_a_strangers_data_changes_nothing_of_theirs(
    owner, owner_client, stranger, fake_openai
):
    conversation = ConversationFactory(owner=stranger, title="Mallory's")
    question = MessageFactory(conversation=conversation, content=SECRET)
    ids = {
        "conversation_id": str(conversation.pk),
        "message_id": str(question.pk),
        "job_id": str(ImportJob.objects.create(owner=stranger, filename="m.zip").pk),
        "object_id": str(conversation.pk),
    }
    before = snapshot(stranger)

    made = battery(owner_client, ids, who="owner", admin_methods=("get", "post"), user=owner)

    assert made > 500, made
    assert snapshot(stranger) == before


def test_the_walk_covers_the_apps_urls_and_the_admins():
    routes = {
        "".join(str(getattr(p, "_route", getattr(p, "_regex", ""))) for p in chain)
        for chain in walk(get_resolver().url_patterns)
    }
    for expected in (
        "c/<id:conversation_id>/m/<id:message_id>/stream/",
        "import/<id:job_id>/",
        "export/<str:fmt>/",
        "accounts/login/",
        "admin/conversations/conversation/import/",
    ):
        assert expected in routes, expected
