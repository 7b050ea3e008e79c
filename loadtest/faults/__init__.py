"""Faults under load: scripted failures injected into a running gateway while it serves traffic.

Each fault is one module, runnable on its own (it starts and stops its own stack):

    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.kill_replica --duration 40
    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.large_outage --duration 20
    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.redis_restart
    flock /tmp/slm-ray.lock .venv/bin/python -m loadtest.faults.disconnects --clients 1000

``run_all`` runs them in sequence on one shared stack and writes a markdown table. The shared
pieces: :mod:`.stack` (Redis, fake large upstream, Ray Serve with the real vLLM small model),
:mod:`.load` (an aiohttp load generator with one outcome record per request), :mod:`.ledger`
(the Redis cost ledger against what clients were told), :mod:`.cluster` (Ray actors, replica
states, process memory) and :mod:`.report` (tables and pass/fail checks).
"""
