"""In-memory fakes of the ports, for fast service tests. Each passes the same contract suite as the real
adapters (tests/integration/test_state_contract.py, tests/integration/test_publisher_contract.py)."""
