"""uvicorn's HTTP/1.1 protocol with a deadline for each request's head.

uvicorn times out idle keep-alive connections but not a connection that sends its request line
and headers a byte at a time (or nothing at all), so a few slow clients could hold connections
forever. Here a request's head must be complete within `head_timeout_s` of its first byte (of
the connection, for the first request); otherwise the connection is closed. The body's deadline
is the app's (app.BodyReader), which can still answer with a JSON error.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


def timed_protocol(head_timeout_s: float) -> type[H11Protocol]:
    """The protocol class to give uvicorn (`Config(http=...)`), with this head deadline."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"head_timeout_s": head_timeout_s})


class TimedH11Protocol(H11Protocol):
    head_timeout_s: float = 30.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()  # a connection that sends nothing is a head that never completes

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._between_requests():
            self._arm()  # bytes of a head that is not complete yet: its deadline runs from the first
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._between_requests() and not self.transport.is_closing():
            self.transport.close()
