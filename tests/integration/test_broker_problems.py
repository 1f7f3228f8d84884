"""Connection problems are named once, in words that point at the setting (issue 15, D4):
a broker certificate from another CA, a client certificate the broker refuses, a wrong
password; a broker that dies soon after a connect is not called a client id clash."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.models.bundle import load_bundle
from sensorcast.mqttio import status_topic

from ..mqtt_helpers import Client, Mosquitto, free_port, wait_for
from ..tls_helpers import PKI
from .conftest import Daemon, message, write_config

T0 = 1_700_000_000.0


def tls_broker(pki: PKI, require_certificate: bool = False) -> tuple[Mosquitto, int]:
    port = free_port()
    broker = Mosquitto(extra=pki.mosquitto_listener(port, require_certificate)).start()
    return broker, port


def tls_config(path: Path, port: int, ca: Path, cert: Path | None = None) -> Path:
    tls = f'[mqtt.tls]\nenabled = true\nca_file = "{ca}"\n'
    if cert is not None:
        tls += f'cert_file = "{cert}"\nkey_file = "{cert.with_suffix(".key")}"\n'
    return write_config(path, port, DEFAULT_BUNDLE, "sc-tls", tls)


def broker_log(broker: Mosquitto, text: str) -> int:
    return broker.log_path.read_text(errors="replace").count(text)


def password_file(tmp_path: Path) -> Path:
    """A mosquitto password file with one user, gw, password right."""
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-c", "-b", str(passwords), "gw", "right"],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    return passwords


def publish_windows(daemon: Daemon, broker: Mosquitto, sensor_id: str) -> None:
    """Once the daemon subscribes, readings of `sensor_id` for six full windows."""
    pub = Client(broker.port)
    wait_for(lambda: daemon.logged("subscribing to"), timeout=20)
    timesteps = load_bundle(DEFAULT_BUNDLE).meta.timesteps
    try:
        for i in range(timesteps + 5):
            pub.publish(f"sensors/{sensor_id}/reading", {"value": 20.0 + i % 3, "ts": T0 + 60 * i})
    finally:
        pub.close()


def metric(port: int, key: str) -> float:
    """The sum of the metrics endpoint's samples whose line starts with `key`."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line[len(key) :]) for line in text.splitlines() if line.startswith(key))


def lines_with(daemon: Daemon, text: str) -> list[str]:
    return [line for line in daemon.lines if text in line]


def test_tls_with_the_right_ca_and_client_certificate_serves(pki, tmp_path, daemon_proc):
    broker, port = tls_broker(pki, require_certificate=True)
    try:
        config = tls_config(tmp_path / "c.toml", port, pki.ca_crt, pki.client_crt)
        status = status_topic("sc-tls")
        sub = Client(broker.port, "forecasts/#", status)
        pub = Client(broker.port)
        daemon = daemon_proc(config)
        # `online` is published after the subscription, on the same connection
        wait_for(lambda: sub.received(status), timeout=20)
        wait_for(lambda: daemon.logged("connected to mqtts://127.0.0.1"))
        for i in range(load_bundle(DEFAULT_BUNDLE).meta.timesteps):
            pub.publish("sensors/t/reading", {"value": 20.0 + i % 3, "ts": T0 + 60 * i})
        wait_for(lambda: sub.json("forecasts/t"), timeout=20)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        sub.close()
        pub.close()
    finally:
        broker.close()


def test_a_broker_certificate_from_another_ca_is_named_once(pki, tmp_path, daemon_proc):
    broker, port = tls_broker(pki)
    try:
        daemon = daemon_proc(tls_config(tmp_path / "c.toml", port, pki.other_crt))
        wait_for(lambda: broker_log(broker, "alert unknown ca") >= 4, timeout=30)
        named = lines_with(daemon, "certificate verify failed")
        assert len(named) == 1, daemon.lines
        assert message(named[0]).startswith("ERROR sensorcast.mqttio: TLS handshake with mqtts://")
        assert "mqtt.tls.ca_file" in named[0]
        assert not lines_with(daemon, "Client is not connected")
        assert not lines_with(daemon, "unreachable")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.close()


def test_a_client_certificate_the_broker_refuses_is_named_once(pki, tmp_path, daemon_proc):
    broker, port = tls_broker(pki, require_certificate=True)
    try:
        config = tls_config(tmp_path / "c.toml", port, pki.ca_crt, pki.rogue_crt)
        daemon = daemon_proc(config)
        wait_for(lambda: broker_log(broker, "certificate verify failed") >= 4, timeout=30)
        named = lines_with(daemon, "unknown ca")
        assert len(named) == 1, daemon.lines
        assert (
            "the broker does not accept the client certificate (mqtt.tls.cert_file)" in (named[0])
        )
        assert not lines_with(daemon, "Client is not connected")
        assert not lines_with(daemon, "failed to receive on socket")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.close()


def test_tls_to_a_plaintext_listener_asks_whether_the_port_is_a_tls_one(
    pki, tmp_path, broker, daemon_proc
):
    """mosquitto resets a TLS handshake on its plaintext listener: that was 'broker ...
    unreachable (Connection reset by peer)', as if the broker were down."""
    daemon = daemon_proc(tls_config(tmp_path / "c.toml", broker.port, pki.ca_crt))
    wait_for(lambda: daemon.logged("reset the connection"), timeout=20)
    (named,) = lines_with(daemon, "reset the connection")
    assert "during the TLS handshake: is mqtt.port a TLS listener?" in named, named
    assert not lines_with(daemon, "unreachable")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0


def test_a_wrong_password_is_said_once_then_quiet(tmp_path, daemon_proc):
    passwords = password_file(tmp_path)
    broker = Mosquitto(extra=f"allow_anonymous false\npassword_file {passwords}").start()
    try:
        extra = ""
        config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-pw", extra)
        text = config.read_text().replace("[model]", 'username = "gw"\npassword = "wrong"\n[model]')
        config.write_text(text)
        daemon = daemon_proc(config)
        wait_for(lambda: broker_log(broker, "not authorised") >= 4, timeout=30)
        assert len(lines_with(daemon, "refused to authenticate mqtt.username 'gw'")) == 1
        assert len(daemon.lines) <= 3, daemon.lines  # serving, the refusal, nothing per attempt
        assert "wrong" not in "".join(daemon.lines)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.close()


def test_a_broker_killed_soon_after_a_connect_is_not_a_client_id_clash(tmp_path, daemon_proc):
    broker = Mosquitto().start()
    try:
        config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-killed")
        daemon = daemon_proc(config)
        for n in (1, 2, 3):
            wait_for(lambda n=n: len(lines_with(daemon, "connected to")) == n, timeout=20)
            time.sleep(2)
            broker.kill()
            wait_for(lambda n=n: len(lines_with(daemon, "disconnected from")) == n)
            time.sleep(1)
            broker.start()
        wait_for(lambda: len(lines_with(daemon, "connected to")) == 4, timeout=20)
        assert not lines_with(daemon, "client_id"), daemon.lines
        assert lines_with(daemon, "disconnected from mqtt://127.0.0.1")[0].split(": ", 1)[1]
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.close()


def test_a_client_id_clash_on_mqtt_3_1_1_is_still_recognised(tmp_path, broker, daemon_proc):
    """MQTT 3.1.1 has no 'session taken over' reason: quick drops in a row while every
    reconnect succeeds are the sign."""
    config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-twin311")
    config.write_text(config.read_text().replace("[model]", 'protocol = "3.1.1"\n[model]'))
    first = daemon_proc(config)
    wait_for(lambda: first.logged("connected to"), timeout=20)
    second = daemon_proc(config)
    clash = "mqtt.client_id 'sc-twin311'"
    wait_for(lambda: first.logged(clash) or second.logged(clash), timeout=30)
    assert first.proc.poll() is None and second.proc.poll() is None  # neither dies


def test_a_broker_of_mqtt_3_1_1_only_that_leaves_the_connect_unanswered_is_named(
    tmp_path, daemon_proc
):
    """amqtt 0.12 (the demo's embedded broker) refuses a bare MQTT 5 connect, but leaves
    one with a will or a session expiry, as both of the daemon's are, unanswered: after the
    keepalive the line blamed only the port and TLS, not mqtt.protocol."""
    pytest.importorskip("amqtt")
    from sensorcast.demo.broker import EmbeddedBroker

    broker = EmbeddedBroker()
    try:
        config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-v5")
        config.write_text(config.read_text().replace("[model]", "keepalive = 5\n[model]"))
        daemon = daemon_proc(config)
        hint = "set mqtt.protocol (SENSORCAST_MQTT__PROTOCOL) to 3.1.1 for this broker"
        wait_for(lambda: daemon.logged("before accepting it"), timeout=30)
        assert all(hint in line for line in lines_with(daemon, "before accepting it"))
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.close()


def test_forecasts_the_broker_refuses_are_said_once_and_counted(tmp_path, daemon_proc):
    # an ACL that does not let the daemon's user publish forecasts: MQTT 5 acknowledges each
    # with "Not authorized", and the daemon counted them as published without a word
    passwords = password_file(tmp_path)
    acl = tmp_path / "acl"
    acl.write_text(
        "topic readwrite sensors/#\ntopic read forecasts/#\n\n"  # anonymous: the test's side
        "user gw\ntopic read sensors/#\ntopic write sensorcast/#\n"
    )
    broker = Mosquitto(extra=f"password_file {passwords}\nacl_file {acl}").start()
    try:
        metrics_port = free_port()
        config = write_config(
            tmp_path / "c.toml",
            broker.port,
            DEFAULT_BUNDLE,
            "sc-acl",
            f"[metrics]\nport = {metrics_port}\n",
        )
        config.write_text(
            config.read_text().replace("[model]", 'username = "gw"\npassword = "right"\n[model]')
        )
        daemon = daemon_proc(config)
        publish_windows(daemon, broker, "acl-1")

        key = 'sensorcast_publishes_refused_total{reason="not_authorized"} '
        # every forecast, anomalies too if any
        wait_for(lambda: metric(metrics_port, key) >= 6, timeout=20)
        (said,) = lines_with(daemon, "refused a publish on 'forecasts/")
        assert "Not authorized" in said and "('gw')" in said, said
        assert "ERROR" in said
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.close()


def test_a_forecast_beyond_the_brokers_maximum_packet_size_is_dropped_not_resent(
    tmp_path, daemon_proc
):
    # mosquitto's max_packet_size is MQTT 5's Maximum Packet Size: the broker closes the
    # connection of a client that sends a larger packet, and paho sent it again at every
    # reconnect; the publishing connection dropped for good and nothing was published
    broker = Mosquitto(extra="max_packet_size 300").start()
    try:
        metrics_port = free_port()
        extra = f"[metrics]\nport = {metrics_port}\n"
        config = write_config(tmp_path / "c.toml", broker.port, DEFAULT_BUNDLE, "sc-max", extra)
        daemon = daemon_proc(config)
        publish_windows(daemon, broker, "big")

        key = 'sensorcast_forecasts_dropped_total{reason="too_large"} '
        wait_for(lambda: metric(metrics_port, key) >= 6, timeout=20)  # anomaly events, if any, too
        (said,) = lines_with(daemon, "is not sent")
        assert "'forecasts/big'" in said and "at most 300" in said, said
        time.sleep(1)  # a dropped connection reconnects within reconnect_max (0.5 s)
        assert not lines_with(daemon, "publishing connection"), daemon.lines
        status = Client(broker.port, status_topic("sc-max"))
        try:
            wait_for(lambda: status.received())
            assert status.received()[-1][1:] == (b"online", True)
        finally:
            status.close()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        broker.close()


class CuttingProxy:
    """A TCP proxy to a broker that closes each of its first `cuts` connections
    `after` seconds after it opened (a flaky link, a NAT that drops its mappings)."""

    def __init__(self, target: int, cuts: int, after: float) -> None:
        self.port = free_port()
        self.target, self.cuts, self.after = target, cuts, after
        self.cut = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                near, _ = self._listener.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
            if self.cut < self.cuts:
                self.cut += 1
                threading.Timer(self.after, self._close, (near, far)).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        CuttingProxy._close(a, b)

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self._closing = True
        self._listener.close()


def test_a_link_that_drops_soon_after_each_connect_is_not_called_a_client_id_clash_for_sure(
    tmp_path, broker, daemon_proc
):
    # every reconnect succeeds and the broker says nothing: as like a link that cuts
    # connections as a clash of client ids, which was the only cause the line named
    proxy = CuttingProxy(broker.port, cuts=8, after=0.5)
    try:
        config = write_config(tmp_path / "c.toml", proxy.port, DEFAULT_BUNDLE, "sc-flaky")
        daemon = daemon_proc(config)
        wait_for(lambda: daemon.logged("times in a row"), timeout=30)
        (said,) = lines_with(daemon, "times in a row")[:1]
        assert "may use mqtt.client_id 'sc-flaky'" in said, said
        assert "cuts connections" in said, said
        assert not lines_with(daemon, "another client uses"), daemon.lines
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        proxy.close()


@pytest.mark.parametrize("slow", [False, True], ids=["reconnect", "queued"])
@pytest.mark.parametrize(
    ("limit", "said"),
    [("retain_available false", "keeps no retained messages"), ("max_qos 0", "QoS 0 only")],
)
def test_a_broker_that_keeps_no_retained_messages_or_takes_qos_0_only_gets_everything(
    tmp_path, daemon_proc, limit, said, slow
):
    # an MQTT 5 broker refuses a connect with a retained last will ("Retain not supported")
    # or one at QoS 1 ("QoS not supported"): the publishing connection was refused for good.
    # `slow`: it reconnects seconds after that refusal, so the status and the forecasts made
    # meanwhile wait in the queue, and go out as the broker takes them at the CONNACK
    broker = Mosquitto(extra=limit).start()
    try:
        sub = Client(broker.port, "forecasts/#", status_topic("sc-noretain"))
        config = write_config(
            tmp_path / "c.toml",
            broker.port,
            DEFAULT_BUNDLE,
            "sc-noretain",
            "[homeassistant]\ndiscovery = true\n",
        )
        if slow:
            text = config.read_text().replace("reconnect_min = 0.1", "reconnect_min = 3")
            config.write_text(text.replace("reconnect_max = 0.5", "reconnect_max = 6"))
        daemon = daemon_proc(config)
        wait_for(lambda: daemon.logged("subscribing to"), timeout=20)
        if not slow:
            wait_for(lambda: sub.received("sensorcast/"), timeout=20)
        pub = Client(broker.port)
        timesteps = load_bundle(DEFAULT_BUNDLE).meta.timesteps
        try:
            for i in range(timesteps + 2):
                reading = {"value": 20.0 + i % 3, "ts": T0 + 60 * i}
                pub.publish("sensors/nr/reading", reading, qos=0 if "qos" in limit else 1)
        finally:
            pub.close()
        wait_for(lambda: len(sub.received("forecasts/nr")) == 3, timeout=30)
        assert sub.received("sensorcast/")[0][1:] == (b"online", False)
        assert len(lines_with(daemon, said)) == 1
        assert not lines_with(daemon, "refused"), daemon.lines
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        wait_for(lambda: sub.received("sensorcast/")[-1][1] == b"offline")
        sub.close()
    finally:
        broker.close()
