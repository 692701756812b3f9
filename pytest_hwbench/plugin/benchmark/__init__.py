"""``hw_benchmark``: the fixture, what a call does and its fraction of peak, the peaks table.

Loaded only by tests that use the fixture (and by the options, for the ini's peak lines).
"""
