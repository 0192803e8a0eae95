"""Shared test configuration: the real search servers come from tests/_servers.py."""

pytest_plugins = ["tests._servers"]
