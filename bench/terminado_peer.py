"""The peer: terminado serving one new terminal per websocket at ``/websocket``.

What a user would run instead of the queue: the PTY read by tornado's event loop and each
read sent straight to the websocket as ``["stdout", text]``.
"""

from __future__ import annotations

import argparse
import asyncio

import tornado.web
from terminado import TermSocket, UniqueTermManager


class Index(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("terminado\n")


async def serve(port: int, command: str) -> None:
    manager = UniqueTermManager(shell_command=["/bin/bash", "-c", command])
    app = tornado.web.Application([
        (r"/websocket", TermSocket, {"term_manager": manager}),
        (r"/", Index),
    ], websocket_max_message_size=16 * 1024 * 1024)
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--command", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.command))


if __name__ == "__main__":
    main()
