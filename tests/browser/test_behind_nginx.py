"""The app behind nginx, configured as the README says: a reply still streams.

The nginx configuration is the README's own code block (the ```nginx one in "Running in
production"), with only the upstream address, the port nginx listens on and its paths
changed, inside the smallest `http { server { … } }` that runs it. nginx runs as a
subprocess of the test on a free loopback port (`nginx -p TMP -c CONF -g 'daemon off; …'`),
never as a system service. Without nginx (Debian: `apt-get install nginx`; .ci/run
installs it) the test is skipped on a developer's machine and fails in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest

from tests.browser.support import (
    assert_streams_closed,
    composer,
    expect,
    expect_complete,
    last_reply,
    log_in,
    replies,
)
from tests.support.fake_openai import Reply

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

README = Path(__file__).resolve().parents[2] / "README.md"
NGINX = os.environ.get("CHATSITE_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
# Where the README's config sends requests (the app as `uvicorn … --port 8000` serves it).
README_UPSTREAM = "http://127.0.0.1:8000"


def readme_nginx_config() -> str:
    """The README's nginx configuration: its one ```nginx code block."""
    blocks = re.findall(r"^```nginx\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 1, f"the README should have one nginx block, not {len(blocks)}"
    return blocks[0]


def nginx_config(tmp: Path, *, listen: int, upstream: str) -> str:
    """The README's locations, pointed at `upstream`, in a server on 127.0.0.1:`listen`."""
    locations = readme_nginx_config()
    assert locations.count(README_UPSTREAM) >= 2, "the README's upstream address changed"
    locations = locations.replace(README_UPSTREAM, upstream)
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log {tmp / "access.log"};
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    server {{
        listen 127.0.0.1:{listen};
{locations}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Nginx:
    url: str
    access_log: Path


@pytest.fixture
def nginx(asgi_server, tmp_path) -> Iterator[Nginx]:
    """nginx with the README's config in front of the live app."""
    if not Path(NGINX).exists():
        missing = f"no nginx at {NGINX} (apt-get install nginx; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(tmp_path, listen=port, upstream=asgi_server.url))
    directives = f"daemon off; pid {tmp_path / 'nginx.pid'}; error_log {tmp_path / 'error.log'};"
    process = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", directives],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                log = (
                    (tmp_path / "error.log").read_text()
                    if (tmp_path / "error.log").exists()
                    else ""
                )
                pytest.fail(f"nginx did not start: {output}\n{log}")
            try:
                with urlopen(f"{url}/accounts/login/", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "nginx did not answer within 10 s"
                time.sleep(0.05)
        yield Nginx(url, tmp_path / "access.log")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        error_log = tmp_path / "error.log"
        if error_log.exists() and error_log.read_text().strip():
            print("nginx error log:", error_log.read_text(), sep="\n")


READ_REPLY = """() => {
  const replies = document.querySelectorAll('#thread [data-role=assistant]');
  const reply = replies[replies.length - 1];
  const body = reply && reply.querySelector('.msg-body');
  return {status: reply ? reply.dataset.status : null, text: body ? body.textContent : ''};
}"""


def test_the_readme_nginx_block_is_the_config_tested():
    """What the test runs is the README's block: locations for the pages, the sends (with
    attachments) and the uploads, with buffering off and room for an hour-long stream."""
    config = readme_nginx_config()
    locations = re.findall(r"^location (.+?) \{", config, re.M)
    assert locations == ["/", "~ ^/(c/[0-9]+/)?send/$", "/import/"]
    assert config.count("proxy_buffering off;") == 3
    assert config.count("proxy_http_version 1.1;") == 3
    assert "proxy_read_timeout 1h;" in config
    # The sends' location takes exactly the two send URLs (nginx's regexes are PCRE).
    sends = re.compile(locations[1].removeprefix("~ "))
    assert sends.match("/send/") and sends.match("/c/12/send/")
    assert not sends.match("/c/12/m/3/edit/") and not sends.match("/c/x/send/")


def test_a_reply_streams_through_nginx_in_pieces(chromium, nginx, fake_openai, settings):
    # The browser's origin is nginx's, with its port, which `Host $host` does not pass on:
    # trusted as the README says (in production, the site's https:// origin).
    settings.CSRF_TRUSTED_ORIGINS = [nginx.url]
    tokens = ["Streaming", " through", " nginx", " arrives", " in", " pieces", "."]
    full = "".join(tokens)
    fake_openai.script(Reply(tokens=tokens, delay=0.15))
    chromium.base_url = nginx.url
    page: Any = chromium.new_context().new_page()

    log_in(page)
    assert page.url.startswith(nginx.url)
    composer(page).fill("Does it stream behind a proxy?")
    composer(page).press("Enter")

    # The reply's text, read off the page until it is no longer in flight.
    expect(replies(page)).to_have_count(1)
    states: list[str] = []
    deadline = time.monotonic() + 15
    while True:
        sample = page.evaluate(READ_REPLY)
        if sample["status"] not in ("pending", "streaming"):
            break
        assert time.monotonic() < deadline, f"still {sample['status']}: {sample}"
        text = " ".join(sample["text"].split())
        assert " ".join(full.split()).startswith(text), sample
        if text and text not in states:
            states.append(text)
        time.sleep(0.02)
    partial = [s for s in states if s != full]
    assert len(partial) >= 3, f"the reply came in {len(states)} piece(s) through nginx: {states}"
    # Each state is longer than the one before: the text grew, piece by piece.
    assert [len(s) for s in partial] == sorted({len(s) for s in partial}), partial

    expect_complete(page, full)
    expect(last_reply(page)).to_have_attribute("data-status", "complete")
    assert_streams_closed(page)
    # Every request of the page went through nginx.
    assert all(u.startswith(nginx.url) for u in chromium.requests), chromium.requests
    access_log = nginx.access_log.read_text()
    assert "/stream/" in access_log, access_log
