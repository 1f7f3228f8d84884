"""The demo's private broker: mosquitto when installed, else the embedded amqtt.

`EmbeddedBroker` runs amqtt, a pure-Python broker that speaks MQTT 3.1.1 only,
on an asyncio loop in a thread of this process; mosquitto is `sandbox.Mosquitto`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from sensorcast.errors import UserError
from sensorcast.models import install_hint
from sensorcast.sandbox import Mosquitto, find_mosquitto


class PrivateBroker(Protocol):
    """A running broker: where it listens, which MQTT versions it speaks, how to stop it."""

    kind: str
    port: int
    protocol: str

    def close(self) -> None: ...


class EmbeddedBroker:
    """amqtt on its own asyncio loop in a thread; MQTT 3.1.1 only."""

    kind = "embedded amqtt"
    protocol = "3.1.1"

    def __init__(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError:
            raise UserError(
                f"the embedded broker needs the [demo] extra: {install_hint('demo')}"
            ) from None
        logging.getLogger("amqtt").setLevel(logging.ERROR)
        self._loop = asyncio.new_event_loop()
        self._broker: Any = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {
                "allow_anonymous": True
            }},
        }  # fmt: skip
        self._thread = threading.Thread(
            target=self._serve, args=(Broker, config), name="sensorcast-demo-broker", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            self.close()
            raise UserError(f"the embedded broker did not start: {self._error or 'timeout'}")
        broker: Any = self._broker
        server = broker._servers["default"].instance  # amqtt has no public accessor for it
        self.port = int(server.sockets[0].getsockname()[1])

    def _serve(self, broker_cls: Any, config: dict[str, Any]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._broker = broker_cls(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
            self._loop.close()
            return
        self._ready.set()
        self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def close(self) -> None:
        """Shut the broker down on its loop, then end the loop and its thread."""
        if not self._thread.is_alive():
            return
        if self._broker is not None and self._error is None:
            done = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                done.result(timeout=10)
            except Exception as exc:  # a failed shutdown must not keep the demo alive
                logging.getLogger(__name__).warning("embedded broker shutdown: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def start_broker(choice: str) -> PrivateBroker:
    """Start the broker asked for: `mosquitto`, `embedded`, or `auto` (mosquitto if installed)."""
    binary = find_mosquitto()
    if choice == "mosquitto" and binary is None:
        raise UserError(
            "mosquitto is not installed (apt install mosquitto); or use --broker embedded"
        )
    if choice == "embedded" or binary is None:
        return EmbeddedBroker()
    broker = Mosquitto(binary=binary, max_queued=10_000)
    try:
        return broker.start()
    except RuntimeError as exc:
        broker.close()
        raise UserError(str(exc)) from None
