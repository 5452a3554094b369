"""Abuse limits (SPEC §9): the counters store (database or Redis) and the rules that use it."""
