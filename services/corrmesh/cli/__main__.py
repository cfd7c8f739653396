from corrmesh.cli.main import main

main()
