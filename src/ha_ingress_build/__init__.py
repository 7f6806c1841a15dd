"""The build side: inventory -> checked node trees -> packages, yum repo, cloud-init seeds, VM images.

Imports the node runtime (ha_ingress_proxy), never the lab harness; never ships on a node.
"""
