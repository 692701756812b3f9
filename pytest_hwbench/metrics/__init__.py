"""Measurements taken around test code; `metrics.memory` is the memory layer."""
