"""The small interfaces services talk to, and their error types; adapters implement them. No SDK imports."""
