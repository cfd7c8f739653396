"""The declared-dependencies YAML file: a good file, and malformed ones naming the entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from corrmesh.topology.declared import DependenciesFileError, load_dependencies_file

GOOD = """\
dependencies:
  - from: {kind: Service, namespace: shop, name: frontend}
    to: {kind: Service, namespace: shop, name: api}
    description: HTTP
  - from: {cluster: prod, kind: Service, namespace: shop, name: api}
    to: {kind: Deployment, namespace: shop, name: mysql, apiVersion: apps/v1}
  - from: {uid: 0b7c-uid}
    to: {kind: Service, name: ldap}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dependencies.yaml"
    path.write_text(text)
    return path


def test_good_file(tmp_path: Path) -> None:
    deps = load_dependencies_file(write(tmp_path, GOOD))
    assert len(deps) == 3
    first = deps[0]
    assert (getattr(first, "from").kind, getattr(first, "from").name) == ("Service", "frontend")
    assert (first.to.namespace, first.to.name, first.description) == ("shop", "api", "HTTP")
    assert getattr(deps[1], "from").cluster == "prod"
    assert deps[1].to.api_version == "apps/v1" and deps[1].description == ""
    assert getattr(deps[2], "from").uid == "0b7c-uid"


@pytest.mark.parametrize("text", ["", "dependencies: []\n", "dependencies:\n"])
def test_empty_files_declare_nothing(tmp_path: Path, text: str) -> None:
    assert load_dependencies_file(write(tmp_path, text)) == []


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (
            "dependencies:\n  - from: {kind: Service, name: a}\n    to: {kind: Service}\n",
            "dependencies[0].to.name: is required unless uid is set",
        ),
        (
            GOOD + "  - from: {kind: Service, name: a}\n    to: {kind: Service, name: a}\n",
            "dependencies[3].to: must differ from `from`",
        ),
        (
            GOOD + "  - from: {kind: Service, name: a}\n",
            "dependencies[3].to: is required",
        ),
        (
            "dependencies:\n  - from: {kind: Service, name: a, color: red}\n"
            "    to: {kind: Service, name: b}\n",
            "dependencies[0].from.color: is not a known field",
        ),
        (
            "dependencies:\n  - from: {kind: Service, name: 42}\n"
            "    to: {kind: Service, name: b}\n",
            "dependencies[0].from.name: must be a string",
        ),
        (
            "dependencies:\n  - from: Service/a\n    to: {kind: Service, name: b}\n",
            "dependencies[0].from: must be a mapping",
        ),
        (
            "dependencies:\n  - from: {kind: Service, name: a}\n    to: {kind: Service, name: b}\n"
            "    weight: 3\n",
            "dependencies[0].weight: is not a known field",
        ),
        ("dependencies:\n  - just a string\n", "dependencies[0]: must be a mapping"),
        ("dependencies: {from: x}\n", "dependencies: must be a list"),
        ("- from: x\n", "dependencies: the file must be a mapping"),
        ("dependencies:\n  - from: {kind: [\n", "not valid YAML at line"),
    ],
)
def test_malformed_files_name_the_entry(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DependenciesFileError) as caught:
        load_dependencies_file(path)
    message = str(caught.value)
    assert message.startswith(f"dependencies file {path}: ")
    assert named in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DependenciesFileError, match="No such file"):
        load_dependencies_file(tmp_path / "absent.yaml")
