"""From bytes on an MQTT topic to normalized alarms, positions and dead letters."""
