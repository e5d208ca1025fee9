"""The receiver under test: the real app under uvicorn on 127.0.0.1, in a thread."""

from __future__ import annotations

import socket
import threading

import uvicorn

from service.app import create_app
from service.settings import Settings

SECRET = "test-secret-1"


class Receiver:
    """A running receiver: its base URL and the settings it runs with."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(settings), log_config=None, access_log=False, lifespan="on", http="httptools"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("receiver failed to start")
            self._thread.join(0.01)

    @property
    def webhook_url(self) -> str:
        return self.url + self.settings.webhook_path

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
