"""What every corrmesh server shares: settings, logs, tracing, auth, TLS,
database, errors, streams and the server bootstrap."""
