from corrmesh.spanner.server import main

main()
