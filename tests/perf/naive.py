"""(b) The straightforward daemon a reader of the Keras docs writes: a deque per sensor,
`model.predict` on each full window, one at a time, in the MQTT callback.

It serves the same bundle with the same normalisation and the daemon's output
contract, so only the engineering differs. Publishes `online` on
`bench/{client_id}/status` right after subscribing (the bench's start-up mark).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict, deque
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sensorcast.models.bundle import load_bundle
from sensorcast.models.preprocess import Scaler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--client-id", required=True)
    p.add_argument("--input", required=True, help="subscription, e.g. sensors/+/reading")
    p.add_argument("--output-prefix", required=True, help="publish to PREFIX{sensor_id}")
    p.add_argument("--bundle", required=True)
    args = p.parse_args()
    bundle = load_bundle(args.bundle)
    meta = bundle.meta
    model = keras.models.load_model(bundle.keras_path)
    scaler = Scaler(meta.normalisation, meta.features, meta.targets)
    windows: dict[str, deque[list[float]]] = defaultdict(lambda: deque(maxlen=meta.timesteps))
    status = f"bench/{args.client_id}/status"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id)

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(args.input, qos=1)
        client.publish(status, "online", qos=1)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        sensor_id = msg.topic.split("/")[-2]
        reading = json.loads(msg.payload)
        window = windows[sensor_id]
        window.append([reading[f] for f in meta.features])
        if len(window) < meta.timesteps:
            return
        x, ctx = scaler.transform(np.array([window], dtype=np.float32))
        y = model.predict(x, verbose=0)
        forecast = scaler.inverse(y.reshape(1, meta.horizon, len(meta.targets)), ctx)[0]
        message = {
            "sensor_id": sensor_id,
            "model": meta.model_id,
            "ts": reading["ts"],
            "forecast": forecast[:, 0].tolist() if len(meta.targets) == 1 else forecast.tolist(),
        }
        client.publish(args.output_prefix + sensor_id, json.dumps(message), qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(args.host, args.port)
    client.loop_forever()


if __name__ == "__main__":
    main()
