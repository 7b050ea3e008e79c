"""Locust load test for slm-router (standard library and Locust only; see ``loadtest/README.md``)."""
