"""`sensorcast bench`: capacity measured end to end over MQTT.

command: the subcommand and its table; measure: one measurement of one system
under test; systems: the processes under test; load: the simulated load and the
timing subscriber; wire: the raw-socket MQTT the load speaks.
"""
