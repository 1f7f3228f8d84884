"""Mutual TLS with the client key from a systemd credential, as the unit passes it under
DynamicUser: the config names the certificate only."""

from __future__ import annotations

import shutil
import signal

from sensorcast.config import TLS_KEY_CREDENTIAL
from sensorcast.models import DEFAULT_BUNDLE
from sensorcast.mqttio import status_topic

from ..mqtt_helpers import Client, wait_for
from .conftest import write_config
from .test_broker_problems import tls_broker


def test_the_client_key_comes_from_the_credential(pki, tmp_path, daemon_proc):
    broker, port = tls_broker(pki, require_certificate=True)
    try:
        creds = tmp_path / "credentials"  # what systemd makes of LoadCredential=mqtt_tls_key:…
        creds.mkdir()
        shutil.copy(pki.client_key, creds / TLS_KEY_CREDENTIAL)
        (creds / TLS_KEY_CREDENTIAL).chmod(0o400)
        tls = (
            f'[mqtt.tls]\nenabled = true\nca_file = "{pki.ca_crt}"\n'
            f'cert_file = "{pki.client_crt}"\n'  # and no key_file
        )
        config = write_config(tmp_path / "c.toml", port, DEFAULT_BUNDLE, "sc-cred", tls)
        status = status_topic("sc-cred")
        sub = Client(broker.port, status)
        daemon = daemon_proc(config, env={"CREDENTIALS_DIRECTORY": str(creds)})
        wait_for(lambda: sub.received(status), timeout=20)  # connected with the client certificate
        # the status may come over the publishing connection before the log line is written
        wait_for(lambda: daemon.logged("connected to mqtts://127.0.0.1"), timeout=10)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
        sub.close()
    finally:
        broker.close()
