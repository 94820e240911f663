"""The root of sanstack's exceptions, and the errors every layer shares; the others live
beside the code that raises them."""


class SanstackError(Exception):
    """Base class of every error sanstack raises on purpose."""


class ConfigError(SanstackError):
    """A configuration or command-line value is invalid; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ServiceError(SanstackError):
    """A request a daemon's service API refuses: ``status`` is 400, 404 or 409, like HTTP.

    Every service (the target's, the snapshot volumes') raises it and every front end (the
    control server, the CLI running a service itself) reports it, so it lives below them all.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(SanstackError):
    """A protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids (a bug on our side or the caller's)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""
