"""A small HTTP proxy in front of the moto server that breaks chosen AWS calls.

Workers are pointed at it (``AWS_ENDPOINT_URL``) instead of at moto. Each request is
named by its operation (S3: ``PutObject``, ``GetObject``, ``ListObjectsV2``...; SQS, whose
JSON protocol names it in ``X-Amz-Target``: ``ReceiveMessage``, ``DeleteMessage``...).
A ``Fault`` breaks the next ``times`` requests of an operation (all of them when
``times`` is None), optionally only those whose path holds ``path_contains``: it answers
what AWS answers when it sheds load (503 SlowDown, ThrottlingException), an internal
error, a refusal, or closes the connection without an answer. Everything else is
forwarded to moto. Every request is recorded, with the attempt number botocore's
standard retry mode sends, so a test sees each retry and each call that got through.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.servers import free_port

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
              "upgrade", "trailer", "content-length"}


def _s3_error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message></Error>").encode()
    return status, {"Content-Type": "application/xml"}, body


def _sqs_error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
    return status, {"Content-Type": "application/x-amz-json-1.0",
                    "x-amzn-query-error": f"{code};{'Sender' if status < 500 else 'Receiver'}"
                    }, body


# What each answer looks like, for S3 and for SQS.
ANSWERS = {
    "slow_down": (_s3_error(503, "SlowDown", "Please reduce your request rate."),
                  _sqs_error(503, "ServiceUnavailable", "Service is unavailable.")),
    "throttle": (_s3_error(503, "SlowDown", "Please reduce your request rate."),
                 _sqs_error(400, "ThrottlingException", "Rate exceeded")),
    "internal": (_s3_error(500, "InternalError", "We encountered an internal error."),
                 _sqs_error(500, "InternalFailure", "Internal failure.")),
    "deny": (_s3_error(403, "AccessDenied", "Access Denied"),
             _sqs_error(403, "AccessDenied", "Access to the resource is denied.")),
}


@dataclass
class Fault:
    operation: str
    answer: str  # a key of ANSWERS, or "drop": close the connection without an answer
    times: int | None = None
    path_contains: str = ""
    done: int = 0

    def applies(self, operation: str, path: str) -> bool:
        return (operation == self.operation and self.path_contains in path
                and (self.times is None or self.done < self.times))


@dataclass(frozen=True)
class Seen:
    operation: str
    path: str
    attempt: int  # botocore's own count of tries of one call
    status: int | None  # None: the connection was dropped
    broken: bool


def operation_of(method: str, target: str, headers) -> tuple[str, bool]:
    """The AWS operation of a request, and whether it is an SQS one."""
    amz_target = headers.get("X-Amz-Target", "")
    if amz_target.startswith("AmazonSQS."):
        return amz_target.split(".", 1)[1], True
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = "/" in parts.path.strip("/")
    if method == "PUT":
        return ("PutObject" if has_key else "CreateBucket"), False
    if method == "GET":
        if has_key:
            return "GetObject", False
        return ("ListObjectsV2" if "list-type" in query else "ListObjects"), False
    if method == "POST" and "delete" in query:
        return "DeleteObjects", False
    if method == "HEAD":
        return ("HeadObject" if has_key else "HeadBucket"), False
    if method == "DELETE":
        return ("DeleteObject" if has_key else "DeleteBucket"), False
    return f"{method} {parts.path}", False


class FaultProxy:
    def __init__(self, upstream: str):
        split = urlsplit(upstream)
        self._upstream = (split.hostname, split.port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def requests(self, operation: str, path_contains: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen
                    if s.operation == operation and path_contains in s.path]

    def _decide(self, operation: str, path: str) -> str | None:
        with self._lock:
            for fault in self._faults:
                if fault.applies(operation, path):
                    fault.done += 1
                    return fault.answer
        return None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass  # one line per AWS call would drown the test's own output

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _attempt(self) -> int:
                # "attempt=2; max=6": botocore's standard retry mode numbers its tries.
                for part in self.headers.get("amz-sdk-request", "").split(";"):
                    name, _, value = part.strip().partition("=")
                    if name == "attempt" and value.isdigit():
                        return int(value)
                return 1

            def _serve(self) -> None:
                body = self._body()
                operation, is_sqs = operation_of(self.command, self.path, self.headers)
                path = urlsplit(self.path).path
                answer = proxy._decide(operation, path)
                if answer == "drop":
                    proxy._record(Seen(operation, path, self._attempt(), None, True))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if answer is not None:
                    status, headers, payload = ANSWERS[answer][1 if is_sqs else 0]
                    proxy._record(Seen(operation, path, self._attempt(), status, True))
                    self._reply(status, headers.items(), payload)
                    return
                upstream = http.client.HTTPConnection(*proxy._upstream, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in HOP_BY_HOP}
                    headers["Content-Length"] = str(len(body))
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    proxy._record(Seen(operation, path, self._attempt(), response.status,
                                       False))
                    # A HEAD answer has no body but tells the object's length.
                    length = (response.getheader("Content-Length", "0")
                              if self.command == "HEAD" else None)
                    self._reply(response.status,
                                [(k, v) for k, v in response.getheaders()
                                 if k.lower() not in HOP_BY_HOP], payload, length)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers, payload: bytes,
                       length: str | None = None) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if length is None:
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        return Handler
