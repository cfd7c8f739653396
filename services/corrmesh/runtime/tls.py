"""TLS and mutual TLS credentials from certificate paths in Settings."""

from __future__ import annotations

from pathlib import Path

import grpc

from corrmesh.runtime.settings import Settings


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS when a certificate and key are set; mutual TLS when a client CA is too."""
    if not settings.tls_cert_file and not settings.tls_key_file:
        return None
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise SystemExit("TLS needs both --tls-cert-file and --tls-key-file")
    pair = (_read(settings.tls_key_file), _read(settings.tls_cert_file))
    if settings.tls_client_ca_file:
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_read(settings.tls_client_ca_file), require_client_auth=True
        )
    return grpc.ssl_server_credentials([pair])


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """Credentials for calls to peers: TLS when a CA is set, with our own pair for mTLS."""
    if not settings.tls_ca_file:
        return None
    key = _read(settings.tls_key_file) if settings.tls_key_file else None
    cert = _read(settings.tls_cert_file) if settings.tls_cert_file else None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file), private_key=key, certificate_chain=cert
    )
