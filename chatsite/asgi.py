"""
ASGI config for chatsite project.

It exposes the ASGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/asgi/
"""

import importlib
import os
import threading
import time

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")

from conversations.web.bodylimit import limit_request_bodies
from conversations.web.lanes import RequestLanes

# Bodies too large for their URL are refused before Django reads (and spools) them;
# requests' synchronous work runs on long-lived threads that keep their connections.
application = limit_request_bodies(RequestLanes(get_asgi_application()))

# Servers that do not go through manage.py run no system checks: refuse a broken config.
from conversations.checks import refuse_to_start_if_misconfigured  # noqa: E402

refuse_to_start_if_misconfigured()


def _warm_up() -> None:
    # The model client (the OpenAI SDK, half a start's imports) is loaded after the server
    # answers, not before: it starts faster, and the first reply does not wait for it.
    time.sleep(0.5)
    importlib.import_module("conversations.llm.backends.openai")


threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()
