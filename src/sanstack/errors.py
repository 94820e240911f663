"""The root of sanstack's exceptions; per-layer errors live beside the code that raises them."""


class SanstackError(Exception):
    """Base class of every error sanstack raises on purpose."""


class ConfigError(SanstackError):
    """A configuration or command-line value is invalid; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ProtocolError(SanstackError):
    """A protocol rule was broken."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids (a bug on our side or the caller's)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""
