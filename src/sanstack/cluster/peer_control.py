"""Control requests between nodes, across machines (asyncio edge; docs/cluster-design.md,
"Control across machines").

Some requests run on another node: a snapshot or volume command on the group's owner
(``cluster/snapshots.py``), ``node pause|resume NAME`` on NAME (``cluster/node_control.py``).
``PeerLinks`` sends them: to the peer's ``peer_control`` address over TCP, signed with the
cluster's secret (``control/peer_auth.py``), when the config gives the peer one; else to
its Unix control socket, which only a node on the same machine can reach.

``PeerControl`` is this node's listener on its own ``peer_control``: the control server of
``control/server.py`` on TCP, behind a guard that admits only requests signed with the
secret, fresh (30 s of clock skew at most) and never seen before, and signs its answers. A
refusal is a 401 and a warning in the log naming the sender's address and why. It serves
only what peers forward (``peer_routes``): the snapshot volume routes for a request that was
forwarded (``via=NODE``: a peer never forwards it again), this node's own pause and resume,
and the status; not moves, events, or a pause of a third node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Protocol

from sanstack.cluster.config import read_secret
from sanstack.cluster.model import ClusterConfig
from sanstack.control.forward import forward
from sanstack.control.peer_auth import SIGNATURE_HEADER, PeerSigner, Rejected, RequestVerifier
from sanstack.control.server import (
    AnswerHeaders,
    ControlServer,
    Listen,
    Params,
    Refusal,
    Request,
    Route,
    RouteRow,
    bind_routes,
    describe,
)
from sanstack.errors import ConfigError, ServiceError

log = logging.getLogger(__name__)

MAX_PEER_CONNECTIONS: Final = 32  # each ends within the control server's timeouts


class PeerLinks:
    """How this node reaches each peer's control plane (module docstring)."""

    def __init__(self, config: ClusterConfig, me: str, secret: bytes | None) -> None:
        self.config = config
        self.signer = None if secret is None else PeerSigner(secret, me)

    def where(self, node: str) -> Listen:
        spec = self.config.node(node)
        if spec.peer_control is not None and self.signer is not None:
            return spec.peer_control
        return spec.control

    def shown(self, node: str) -> str:
        return describe(self.where(node))

    async def request(
        self, node: str, method: str, resource: str, body: Any, *, within: float
    ) -> tuple[int, Any]:
        """(status, answer) of ``node``; ``ForwardError`` saying why there is none."""
        where = self.where(node)
        signer = None if isinstance(where, Path) else self.signer
        return await forward(where, method, resource, body, within=within, signer=signer)


class PeerControl:
    """This node's links to its peers and its own ``peer_control`` listener."""

    def __init__(self, config: ClusterConfig, me: str, secret: bytes | None) -> None:
        self.me = me
        self.spec = config.node(me)
        self.links = PeerLinks(config, me, secret)
        self.server: ControlServer | None = None
        self._verifier = (
            None
            if secret is None
            else RequestVerifier(secret, [n for n in config.node_names if n != me])
        )

    @classmethod
    def of(cls, config: ClusterConfig, me: str) -> PeerControl:
        """Reads and checks the secret file (``ConfigError`` naming ``cluster.secret_file``)."""
        secret = None if config.secret_file is None else read_secret(config.secret_file)
        return cls(config, me, secret)

    async def start(self, routes: list[Route], field: str) -> None:
        """Listens on this node's ``peer_control``, if it has one."""
        address = self.spec.peer_control
        if address is None or self._verifier is None:
            return
        server = ControlServer(
            address, routes, guard=self._guard, max_connections=MAX_PEER_CONNECTIONS
        )
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(field, f"cannot listen: {exc.strerror or exc}") from None
        self.server = server
        log.info("peer control: listening on %s for signed requests", server.where)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    def _guard(self, request: Request) -> Refusal | AnswerHeaders:
        assert self._verifier is not None
        verifier = self._verifier
        path = request.target.partition("?")[0]
        verdict = verifier.verify(
            request.method, request.target, request.headers, request.body, time.time()
        )
        if isinstance(verdict, Rejected):
            log.warning(
                "peer control: refused %s %s from %s: %s",
                request.method,
                path,
                request.peer,
                verdict.reason,
            )
            return Refusal(verdict.status, f"peer control: {verdict.reason}")
        log.info(
            "peer control: %s %s from %s at %s", request.method, path, verdict.node, request.peer
        )
        nonce = verdict.nonce

        def seal(status: int, body: bytes) -> list[tuple[str, str]]:
            return [(SIGNATURE_HEADER, verifier.sign_answer(nonce, status, body))]

        return seal


class PeerService(Protocol):
    """What the peer routes ask of the node (``ClusterNode``)."""

    me: str

    async def status(self) -> dict[str, Any]: ...

    async def set_paused(self, node: str, paused: bool) -> dict[str, Any]: ...

    def io(self) -> dict[str, Any]: ...


async def _status(svc: PeerService, _m: Params, _b: Any) -> Any:
    return await svc.status()


async def _io(svc: PeerService, _m: Params, _b: Any) -> Any:
    return svc.io()


async def _own_pause(svc: PeerService, node: str, paused: bool) -> Any:
    if node != svc.me:
        raise ServiceError(
            403, f"node: a peer pauses or resumes only {svc.me} at its address, not {node}"
        )
    return await svc.set_paused(node, paused)


async def _pause(svc: PeerService, m: Params, _b: Any) -> Any:
    return await _own_pause(svc, m["node"], True)


async def _resume(svc: PeerService, m: Params, _b: Any) -> Any:
    return await _own_pause(svc, m["node"], False)


PEER_ROUTES: list[RouteRow[PeerService]] = [
    ("GET", r"^/v1/cluster/status$", _status),
    ("GET", r"^/v1/cluster/io$", _io),  # a peer's status shows the groups' I/O from here
    ("POST", r"^/v1/cluster/nodes/(?P<node>[^/]+)/pause$", _pause),
    ("POST", r"^/v1/cluster/nodes/(?P<node>[^/]+)/resume$", _resume),
]


def peer_routes(node: PeerService, volume_routes: list[Route]) -> list[Route]:
    """What ``peer_control`` serves: ``PEER_ROUTES`` and the volume routes, those only for a
    forwarded request."""
    return bind_routes(node, PEER_ROUTES) + [
        Route(route.method, route.pattern, _forwarded_only(route.handler))
        for route in volume_routes
    ]


def _forwarded_only(
    handler: Callable[[Params, Any], Awaitable[Any]],
) -> Callable[[Params, Any], Awaitable[Any]]:
    async def forwarded(params: Params, body: Any) -> Any:
        if not params.get("via"):
            raise ServiceError(
                403, "volume: a peer's address serves only requests forwarded by a node (via)"
            )
        return await handler(params, body)

    return forwarded
