from corrmesh.ingest.server import main

main()
