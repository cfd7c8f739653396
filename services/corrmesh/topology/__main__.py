"""``python -m corrmesh.topology`` starts the Topology server."""

from corrmesh.topology.server import main

main()
