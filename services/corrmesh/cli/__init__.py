"""The ``corrmesh`` command line."""
