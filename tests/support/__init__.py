"""Helpers the tests share: test-client calls (api), live-server calls (live), faults made to happen (faults)."""
