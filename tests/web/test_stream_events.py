"""The stream's event names are defined once (generation.events) and used from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conversations.generation.events import StreamEvent
from conversations.models import Message
from tests.support.factories import ReplyFactory

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_the_page_takes_the_event_names_from_the_vocabulary(owner_client, owner):
    reply = ReplyFactory(conversation__owner=owner, status=Message.Status.STREAMING)
    page = owner_client.get(reply.conversation.get_absolute_url()).content.decode()
    assert f'sse-swap="{StreamEvent.BLOCK}"' in page
    assert f'sse-swap="{StreamEvent.TAIL}"' in page
    assert f'sse-swap="{StreamEvent.PHASE}"' in page
    assert f'sse-close="{StreamEvent.DONE}"' in page
    assert f'data-sse-block="{StreamEvent.BLOCK}"' in page
    assert f'data-sse-tail="{StreamEvent.TAIL}"' in page
    assert f'data-sse-done="{StreamEvent.DONE}"' in page


def test_no_template_script_or_view_spells_an_event_name_itself():
    literal = re.compile(
        r"""sse-(swap|close)="(phase|delta|block|tail|done)"|["'](block|tail|done)["']\)?\s*\)?\s*return"""
    )
    sources = [
        *ROOT.joinpath("templates").rglob("*.html"),
        ROOT / "static" / "chatsite" / "chat.js",
        ROOT / "conversations" / "web" / "stream.py",
    ]
    spelled = [str(path) for path in sources if literal.search(path.read_text(encoding="utf-8"))]
    js = (ROOT / "static" / "chatsite" / "chat.js").read_text(encoding="utf-8")
    assert 'detail.type !== "' not in js and "detail.type !== '" not in js
    stream = (ROOT / "conversations" / "web" / "stream.py").read_text(encoding="utf-8")
    assert not re.search(r"_sse\(\s*[\"']", stream)
    assert spelled == []
