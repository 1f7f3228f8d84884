"""`sensorcast demo`: a private broker, a simulated fleet, the daemon and a live view.

command: the subcommand and its lifecycle; fleet: the simulated sensors;
scoreboard: readings against forecasts as a subscriber sees them; view: the
live table and the plain report; broker: the embedded broker when mosquitto
is absent.
"""
