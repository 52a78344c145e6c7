"""Shared fixtures: the console tests' replayed store and logins (tests/console_fixtures.py)."""

pytest_plugins = ["tests.console_fixtures"]
