"""(a) The plain paho-mqtt relay: parse each reading's JSON and republish it, nothing else.

Written the straightforward way (callbacks, `loop_forever`), with the daemon's
MQTT contract (QoS 1 subscription, QoS 1 publish), so it is the I/O floor a
Python MQTT service can reach. Publishes `online` on `bench/{client_id}/status`
right after subscribing, which is how the bench times its start-up.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--client-id", required=True)
    p.add_argument("--input", required=True, help="subscription, e.g. sensors/+/reading")
    p.add_argument("--output-prefix", required=True, help="publish to PREFIX{sensor_id}")
    args = p.parse_args()
    status = f"bench/{args.client_id}/status"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id)

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(args.input, qos=1)
        client.publish(status, "online", qos=1)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        sensor_id = msg.topic.split("/")[-2]
        reading = json.loads(msg.payload)
        reading["sensor_id"] = sensor_id
        client.publish(args.output_prefix + sensor_id, json.dumps(reading), qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(args.host, args.port)
    client.loop_forever()


if __name__ == "__main__":
    main()
