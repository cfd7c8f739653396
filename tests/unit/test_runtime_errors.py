from google.rpc import code_pb2, error_details_pb2

from corrmesh.runtime.errors import FieldViolations, not_found_status


def test_violations_name_nested_fields_and_carry_bad_request() -> None:
    violations = FieldViolations()
    violations.nested("events[2]").add("title", "is required")
    violations.add("page_size", "must not be negative")
    status = violations.to_status()
    assert status.code == code_pb2.INVALID_ARGUMENT
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["events[2].title", "page_size"]
    assert "events[2].title" in status.message


def test_empty_violations_are_falsy() -> None:
    assert not FieldViolations()


def test_not_found_names_the_resource() -> None:
    status = not_found_status("Group", "g-1")
    info = error_details_pb2.ResourceInfo()
    assert status.details[0].Unpack(info)
    assert (status.code, info.resource_type, info.resource_name) == (
        code_pb2.NOT_FOUND,
        "Group",
        "g-1",
    )
