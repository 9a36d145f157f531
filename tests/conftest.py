"""Shared fixtures: real PostgreSQL + PostGIS and Mosquitto started by the tests themselves."""

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.mosquitto"]
