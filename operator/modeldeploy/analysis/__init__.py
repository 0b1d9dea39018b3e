"""Measurements the operator takes outside the API server, for a canary's analysis."""
