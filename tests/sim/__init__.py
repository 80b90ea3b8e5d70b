"""A deterministic simulation test of the lifecycle (issue 15): the real code, simulated storage, queue and Graph.

``python -m tests.sim`` runs seeds; ``python -m tests.sim --seed S --trace`` replays one with its trace.
"""
