"""One control request from a daemon to another daemon's control plane (asyncio edge): over
a Unix socket, or over TCP signed with the cluster's secret (``control/peer_auth.py``).

Every failure is a ``ForwardError`` whose ``reason`` is one line saying why, with where it
was sent: ``did not answer at ADDRESS: connection refused`` (nothing listens),
``... within 20 s`` (timed out), ``... no route to host`` (not reachable), ``refused the
request at ADDRESS: ...`` (the peer refused to authenticate it, or its answer is not
signed), ``answered ... with something that is not a control answer``. ``status`` is what
the forwarding node answers its own caller: 504 for a timeout, 502 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from pathlib import Path
from typing import Any, Final

import h11

from sanstack.control.peer_auth import SIGNATURE_HEADER, PeerSigner
from sanstack.control.server import Listen, describe
from sanstack.errors import SanstackError

MAX_ANSWER: Final = 16 << 20  # a listing of many snapshots is large; more is not an answer


class ForwardError(SanstackError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def forward(
    where: Listen,
    method: str,
    resource: str,
    body: Any,
    *,
    within: float,
    signer: PeerSigner | None = None,
) -> tuple[int, Any]:
    """(HTTP status, decoded JSON answer) of one request; a signed request's answer is
    believed only when it is signed too (an unsigned one is a refusal)."""
    shown = describe(where)
    data = b"" if body is None else json.dumps(body).encode()
    headers = [
        ("host", "localhost" if isinstance(where, Path) else shown),
        ("content-length", str(len(data))),
    ]
    if data:
        headers.append(("content-type", "application/json"))
    nonce = secrets.token_hex(16)
    if signer is not None:
        headers += signer.sign(method, resource, data, time.time(), nonce)
    try:
        async with asyncio.timeout(within):
            status, signature, answer = await _exchange(where, method, resource, headers, data)
    except TimeoutError:
        raise ForwardError(504, f"did not answer at {shown} within {within:g} s") from None
    except FileNotFoundError:
        raise ForwardError(502, f"did not answer at {shown}: no such socket") from None
    except ConnectionRefusedError:
        raise ForwardError(502, f"did not answer at {shown}: connection refused") from None
    except OSError as exc:
        why = (exc.strerror or str(exc) or type(exc).__name__).lower()
        raise ForwardError(502, f"did not answer at {shown}: not reachable ({why})") from None
    except (h11.ProtocolError, ValueError) as exc:
        raise ForwardError(
            502, f"answered at {shown} with something that is not a control answer: {exc}"
        ) from None
    try:
        payload = json.loads(answer or b"null")
    except ValueError:
        raise ForwardError(502, f"answered at {shown} with something that is not JSON") from None
    if signer is not None and not signer.answer_is_authentic(nonce, status, answer, signature):
        message = payload.get("error") if isinstance(payload, dict) else None
        if status == 200 or not isinstance(message, str):
            message = "its answer is not signed with the cluster's secret"
        raise ForwardError(502, f"refused the request at {shown}: {' '.join(message.split())}")
    return status, payload


async def _exchange(
    where: Listen, method: str, resource: str, headers: list[tuple[str, str]], data: bytes
) -> tuple[int, str | None, bytes]:
    if isinstance(where, Path):
        reader, writer = await asyncio.open_unix_connection(str(where))
    else:
        reader, writer = await asyncio.open_connection(*where)
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(method=method, target=resource, headers=headers)))
        if data:
            writer.write(conn.send(h11.Data(data=data)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        status = 0
        signature: str | None = None
        answer = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                for name, value in event.headers:
                    if name.decode() == SIGNATURE_HEADER:
                        signature = value.decode()
            elif isinstance(event, h11.Data):
                answer += event.data
                if len(answer) > MAX_ANSWER:
                    raise ValueError("the answer is too large")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        return status, signature, bytes(answer)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
