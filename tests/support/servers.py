"""chatsite served by uvicorn in a thread: real HTTP and ASGI, for tests and benchmarks."""

from __future__ import annotations


class LiveASGIServer:
    def __init__(self) -> None:
        import socket
        import threading

        import uvicorn
        from django.core.asgi import get_asgi_application

        from conversations.web.bodylimit import limit_request_bodies
        from conversations.web.lanes import RequestLanes

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        # The stack of chatsite/asgi.py (whose import would run the start-up checks).
        self.lanes = RequestLanes(get_asgi_application())
        config = uvicorn.Config(
            limit_request_bodies(self.lanes),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        # The lanes keep their database connections: close them before the test database goes.
        self.lanes.close()
