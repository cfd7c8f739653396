from pathlib import Path

import pytest

from corrmesh.runtime.settings import DEFAULT_GRPC_PORTS, load_settings


def test_defaults_follow_the_port_table() -> None:
    for service, port in DEFAULT_GRPC_PORTS.items():
        settings = load_settings(service, [], env={})
        assert settings.port == port
        assert settings.effective_database_url == f"sqlite:///var/{service}.db"
        assert not settings.auth_enabled


def test_flag_beats_service_variable_beats_shared_variable() -> None:
    env = {"CORRMESH_PORT": "1", "CORRMESH_INGEST_PORT": "2", "CORRMESH_VAR_DIR": "/tmp/x"}
    assert load_settings("ingest", [], env=env).port == 2
    assert load_settings("topology", [], env=env).port == 1
    assert load_settings("ingest", ["--port", "3"], env=env).port == 3
    assert load_settings("ingest", [], env=env).var_dir == Path("/tmp/x")


def test_database_url_variable_per_service() -> None:
    env = {"CORRMESH_CORRELATION_DATABASE_URL": "postgresql://db/test"}
    assert (
        load_settings("correlation", [], env=env).effective_database_url == "postgresql://db/test"
    )
    assert load_settings("ingest", [], env=env).effective_database_url.startswith("sqlite:")


def test_auth_turns_on_with_a_token_file_and_off_with_the_switch() -> None:
    env = {"CORRMESH_AUTH_TOKENS_FILE": "/etc/tokens"}
    assert load_settings("ingest", [], env=env).auth_enabled
    assert not load_settings("ingest", ["--auth-disabled"], env=env).auth_enabled


def test_bad_number_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="port"):
        load_settings("ingest", ["--port", "fifty"], env={})


def test_unknown_service_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        load_settings("billing", [], env={})
