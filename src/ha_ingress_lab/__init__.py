"""The lab and benchmark harness: the tier in network namespaces, failure scenarios, benchmarks, VM helpers.

Imports the node runtime and the build side; nothing imports it back; never ships on a node.
"""
