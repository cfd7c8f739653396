from corrmesh.correlation.server import main

main()
