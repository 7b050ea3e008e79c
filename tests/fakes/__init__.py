"""Small real stand-ins for remote services (real servers on loopback, not mocks)."""
