"""The reliability suite's world (tests/reliability/fault_world.py) as a fixture for every test here."""

from tests.reliability.fault_world import fault_world

__all__ = ["fault_world"]
