"""Ray Serve deployments of slm-router and the application builder."""
