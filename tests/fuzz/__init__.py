"""Property-based fuzzing of the HTTP API (shared by the CI test and the long-run script)."""
