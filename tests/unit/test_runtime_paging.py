from corrmesh.runtime.errors import FieldViolations
from corrmesh.runtime.paging import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    decode_page_token,
    encode_page_token,
    filter_fingerprint,
    page_size,
)


def test_token_round_trip() -> None:
    fingerprint = filter_fingerprint("DOMAIN_DICOM", 5)
    violations = FieldViolations()
    token = encode_page_token(1234, fingerprint)
    assert decode_page_token(token, fingerprint, violations) == 1234
    assert not violations


def test_token_for_another_filter_is_rejected() -> None:
    violations = FieldViolations()
    token = encode_page_token(10, filter_fingerprint("a"))
    assert decode_page_token(token, filter_fingerprint("b"), violations) is None
    assert violations.items[0][0] == "page_token"


def test_garbage_token_is_rejected() -> None:
    violations = FieldViolations()
    assert decode_page_token("not-a-token!!", "f", violations) is None
    assert violations.items == [("page_token", "not a token this service issued")]


def test_page_size_rules() -> None:
    violations = FieldViolations()
    assert page_size(0, violations) == DEFAULT_PAGE_SIZE
    assert page_size(10**9, violations) == MAX_PAGE_SIZE
    assert not violations
    page_size(-1, violations)
    assert violations.items[0][0] == "page_size"
