"""Tests of ``k8sstream._status``: ``metav1.Status`` parsing and the emulator's builders.

The bodies are copied from shared/PROTOCOL.md (2.3 for HTTP error bodies, 5.2 for the error
channel). The parsers must follow client-go's ``errorDecoderV4`` (5.3); the builders must produce
what the apiserver writes, field order included, and round-trip through the parsers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k8sstream._status import (
    ApiStatus,
    ExitStatus,
    StatusCause,
    exit_code_status,
    exit_status_from_json,
    exit_status_from_text,
    http_error_body,
    internal_error_status,
    parse_status,
    status_message,
    success_status,
)
from k8sstream.errors import RemoteProtocolError

# PROTOCOL.md 2.3
NOT_FOUND_BODY = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods '
    b'\\"web-0\\" not found","reason":"NotFound","details":{"name":"web-0","kind":"pods"},'
    b'"code":404}'
)
# PROTOCOL.md 5.2
SUCCESS = b'{"metadata":{},"status":"Success"}'
EXIT_2 = (
    b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: '
    b'command terminated with exit code 2","reason":"NonZeroExitCode","details":{"causes":'
    b'[{"reason":"ExitCode","message":"2"}]}}'
)
UPGRADE_ERROR = 'unable to upgrade connection: container not found ("app")'
INTERNAL = (
    b'{"metadata":{},"status":"Failure","message":"Internal error occurred: unable to upgrade '
    b'connection: container not found (\\"app\\")","reason":"InternalError","details":{"causes":'
    b'[{"message":"unable to upgrade connection: container not found (\\"app\\")"}]},"code":500}'
)


def keys_in_order(payload: bytes) -> list:
    return [key for key, _ in json.loads(payload, object_pairs_hook=lambda pairs: pairs)]


def nonzero(message: object) -> bytes:
    return json.dumps(
        {
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: x",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": message}]},
        }
    ).encode()


# --- parse_status ---------------------------------------------------------------------------------


def test_parse_apiserver_not_found_body():
    status = parse_status(NOT_FOUND_BODY)
    assert status == ApiStatus(
        status="Failure",
        message='pods "web-0" not found',
        reason="NotFound",
        code=404,
        details={"name": "web-0", "kind": "pods"},
        causes=(),
    )
    assert not status.is_success


def test_parse_forbidden_body():
    message = (
        'pods "web-0" is forbidden: User "alice" cannot get resource "pods/exec" in API group "" '
        'in the namespace "default"'
    )
    body = http_error_body(403, "Forbidden", message, {"name": "web-0", "kind": "pods"})
    status = parse_status(body)
    assert (status.status, status.code, status.reason, status.message) == (
        "Failure",
        403,
        "Forbidden",
        message,
    )


def test_parse_success():
    status = parse_status(SUCCESS)
    assert status == ApiStatus(status="Success")
    assert status.is_success
    assert status.code is None
    assert status.details == {}


def test_parse_exit_2():
    status = parse_status(EXIT_2)
    assert status.status == "Failure"
    assert status.reason == "NonZeroExitCode"
    assert status.code is None  # "No code field in either case" (PROTOCOL.md 5.2)
    assert status.causes == (StatusCause(reason="ExitCode", message="2"),)


def test_parse_internal_error():
    status = parse_status(INTERNAL)
    assert status.message == f"Internal error occurred: {UPGRADE_ERROR}"
    assert status.reason == "InternalError"
    assert status.code == 500
    assert status.causes == (StatusCause(message=UPGRADE_ERROR),)


def test_cause_type_is_serialized_as_reason_and_field_is_kept():
    body = json.dumps(
        {
            "status": "Failure",
            "details": {
                "causes": [
                    {"reason": "FieldValueInvalid", "message": "bad", "field": "spec.x"},
                    "not an object",
                    {},
                ]
            },
        }
    ).encode()
    assert parse_status(body).causes == (
        StatusCause(reason="FieldValueInvalid", message="bad", field="spec.x"),
        StatusCause(),
    )


@pytest.mark.parametrize("code", ['"404"', "true", "null", "4.04"])
def test_non_integer_code_is_dropped(code):
    body = b'{"status":"Failure","code":' + code.encode() + b"}"
    assert parse_status(body).code is None


@pytest.mark.parametrize("details", ['"x"', "[]", "null", "3"])
def test_non_object_details_become_empty(details):
    status = parse_status(b'{"status":"Failure","details":' + details.encode() + b"}")
    assert status.details == {}
    assert status.causes == ()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\xfd",
        b'{"status":"Success"',
        b'{"status":"Success"}garbage',
    ],
)
def test_parse_non_json(body):
    with pytest.raises(RemoteProtocolError, match="status is not JSON"):
        parse_status(body)


@pytest.mark.parametrize(
    "body", [b"[]", b"null", b"42", b'"Success"', b"{}", b'{"status":null}', b'{"status":1}']
)
def test_parse_json_that_is_not_a_status(body):
    with pytest.raises(RemoteProtocolError, match="no 'status' field"):
        parse_status(body)


def test_error_preview_is_bounded():
    body = b"x" * 10_000
    with pytest.raises(RemoteProtocolError) as info:
        parse_status(body)
    assert len(str(info.value)) < 300
    assert str(info.value).endswith("...'")


def test_parse_error_chains_the_cause():
    with pytest.raises(RemoteProtocolError) as info:
        parse_status(b"nope")
    assert isinstance(info.value.__cause__, ValueError)


def test_null_strings_are_empty():
    status = parse_status(
        b'{"status":"Failure","message":null,"reason":null,'
        b'"details":{"causes":[{"reason":null,"message":null}]}}'
    )
    assert status.message == ""
    assert status.reason == ""
    assert status.causes == (StatusCause(),)


def test_status_values_are_hashable():
    status = parse_status(NOT_FOUND_BODY)
    assert hash(status) == hash(parse_status(NOT_FOUND_BODY))
    assert hash(ExitStatus(None, status))


def test_status_values_are_frozen_and_picklable():
    status = parse_status(INTERNAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.message = "changed"  # type: ignore[misc]
    exit_status = ExitStatus(None, status)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exit_status.returncode = 0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(exit_status)) == exit_status


def test_exit_status_message():
    assert ExitStatus(0).message == ""
    assert ExitStatus(None, ApiStatus("Failure", message="boom")).message == "boom"


# --- exit_status_from_json (client-go errorDecoderV4, PROTOCOL.md 5.3) ----------------------------


def test_success_is_exit_0():
    exit_status = exit_status_from_json(SUCCESS)
    assert exit_status.returncode == 0
    assert exit_status.status == ApiStatus(status="Success")


def test_nonzero_exit_code_from_protocol_md():
    exit_status = exit_status_from_json(EXIT_2)
    assert exit_status.returncode == 2
    assert exit_status.message.endswith("command terminated with exit code 2")


def test_other_failure_has_no_exit_code():
    exit_status = exit_status_from_json(INTERNAL)
    assert exit_status.returncode is None
    assert exit_status.message == f"Internal error occurred: {UPGRADE_ERROR}"


def test_success_with_kind_and_api_version_is_still_success():
    body = b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":200}'
    assert exit_status_from_json(body).returncode == 0


@pytest.mark.parametrize(("text", "code"), [("0", 0), ("1", 1), ("255", 255), ("0255", 255)])
def test_exit_code_range(text, code):
    assert exit_status_from_json(nonzero(text)).returncode == code


@pytest.mark.parametrize("text", ["256", "-1", "abc", "", "1.0", " 1", "1\n", "+1", "1_0", "0x1"])
def test_exit_code_rejected(text):
    with pytest.raises(RemoteProtocolError, match="ExitCode"):
        exit_status_from_json(nonzero(text))


@pytest.mark.parametrize("text", ["\u00b2", "9" * 5000], ids=["superscript-2", "5000-digits"])
def test_exit_code_that_crashes_int(text):
    with pytest.raises(RemoteProtocolError, match="ExitCode"):
        exit_status_from_json(nonzero(text))


def test_exit_code_non_ascii_digits_rejected():
    with pytest.raises(RemoteProtocolError):
        exit_status_from_json(nonzero("\u0663"))


@pytest.mark.parametrize(
    "obj",
    [
        {"status": "Failure", "reason": "NonZeroExitCode"},
        {"status": "Failure", "reason": "NonZeroExitCode", "details": {}},
        {"status": "Failure", "reason": "NonZeroExitCode", "details": {"causes": []}},
        {
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "Other", "message": "1"}]},
        },
        # The first ExitCode cause decides, as in client-go, even if a later one is valid.
        {
            "status": "Failure",
            "reason": "NonZeroExitCode",
            "details": {
                "causes": [
                    {"reason": "ExitCode", "message": "x"},
                    {"reason": "ExitCode", "message": "1"},
                ]
            },
        },
    ],
    ids=["no-details", "no-causes", "empty-causes", "no-ExitCode", "first-ExitCode-bad"],
)
def test_nonzero_exit_code_without_usable_cause(obj):
    with pytest.raises(RemoteProtocolError, match="NonZeroExitCode"):
        exit_status_from_json(json.dumps(obj).encode())


@pytest.mark.parametrize("status", ["Pending", "SUCCESS", "failure", ""])
def test_unknown_status_value(status):
    with pytest.raises(RemoteProtocolError, match="unknown status"):
        exit_status_from_json(json.dumps({"status": status}).encode())


def test_failure_reason_is_case_sensitive():
    # "nonzeroexitcode" is just another Failure: no exit code, not a protocol error.
    body = nonzero("2").replace(b"NonZeroExitCode", b"nonzeroexitcode")
    assert exit_status_from_json(body).returncode is None


# --- exit_status_from_text (v1-style error channel) -----------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (b"", 0, ""),
        (b"   \n", 0, ""),
        (b"command terminated with non-zero exit code: command terminated with exit code 7", 7, ""),
        (b"command terminated with non-zero exit code: exit code 0", 0, ""),
        (b"exit code 255 \n", 255, ""),
        (b"exit code 256", None, ""),
        (b"exit code -1", None, ""),
        (b"exit code 1000", None, ""),
        (b"exit code seven", None, ""),
        (b"Internal error occurred: error attaching to container: boom", None, ""),
    ],
)
def test_text_status(body, code, reason):
    exit_status = exit_status_from_text(body)
    assert exit_status.returncode == code
    text = body.decode().strip()
    if not text:
        assert exit_status.status == ApiStatus(status="Success")
    else:
        assert exit_status.status.status == "Failure"
        assert exit_status.message == text
        assert exit_status.status.reason == ("NonZeroExitCode" if code is not None else "")


def test_text_status_invalid_utf8_is_replaced_not_raised():
    assert exit_status_from_text(b"\xffexit code 3").returncode == 3
    assert exit_status_from_text(b"\xff\xfe").message == "\ufffd\ufffd"


# --- builders: exact shapes and order (PROTOCOL.md 2.3, 5.2) --------------------------------------


def test_success_builder_is_byte_exact():
    assert success_status() == SUCCESS


def test_exit_code_builder_is_byte_exact():
    assert exit_code_status(2) == EXIT_2


def test_internal_error_builder_is_byte_exact():
    assert internal_error_status(UPGRADE_ERROR) == INTERNAL


def test_http_error_body_is_byte_exact():
    body = http_error_body(
        404, "NotFound", 'pods "web-0" not found', {"name": "web-0", "kind": "pods"}
    )
    assert body == NOT_FOUND_BODY


def test_builder_field_order_follows_the_go_struct():
    # metav1.Status: metadata, status, message, reason, details, code (PROTOCOL.md 5.1).
    assert keys_in_order(success_status()) == ["metadata", "status"]
    assert keys_in_order(exit_code_status(9)) == [
        "metadata",
        "status",
        "message",
        "reason",
        "details",
    ]
    assert keys_in_order(internal_error_status("x")) == [
        "metadata",
        "status",
        "message",
        "reason",
        "details",
        "code",
    ]
    assert keys_in_order(http_error_body(500, "InternalError", "x")) == [
        "kind",
        "apiVersion",
        "metadata",
        "status",
        "message",
        "reason",
        "code",
    ]


def test_builders_parse_as_json_equal_to_protocol_md():
    assert json.loads(exit_code_status(2)) == json.loads(EXIT_2)
    assert json.loads(internal_error_status(UPGRADE_ERROR)) == json.loads(INTERNAL)


@pytest.mark.parametrize("code", range(1, 256))
def test_exit_code_builder_round_trip(code):
    exit_status = exit_status_from_json(exit_code_status(code))
    assert exit_status.returncode == code
    assert exit_status.status.reason == "NonZeroExitCode"
    assert exit_status.message == (
        f"command terminated with non-zero exit code: command terminated with exit code {code}"
    )
    # The v1 protocols carry only the message; the code survives that too.
    assert exit_status_from_text(status_message(exit_code_status(code)).encode()).returncode == code


@pytest.mark.parametrize("code", [256, 1000, -1])
def test_exit_code_builder_out_of_range_is_rejected_by_the_parser(code):
    with pytest.raises(RemoteProtocolError):
        exit_status_from_json(exit_code_status(code))


def test_success_builder_round_trip():
    assert exit_status_from_json(success_status()).returncode == 0
    assert status_message(success_status()) == ""
    assert exit_status_from_text(status_message(success_status()).encode()).returncode == 0


@pytest.mark.parametrize("error", [UPGRADE_ERROR, "caf\u00e9 <&> \u2603", 'quote " backslash \\'])
def test_internal_error_builder_round_trip(error):
    exit_status = exit_status_from_json(internal_error_status(error))
    assert exit_status.returncode is None
    assert exit_status.message == f"Internal error occurred: {error}"
    assert exit_status.status.code == 500
    assert exit_status.status.causes == (StatusCause(message=error),)
    assert status_message(internal_error_status(error)) == f"Internal error occurred: {error}"


def test_http_error_body_round_trip_without_details():
    status = parse_status(http_error_body(400, "BadRequest", "dryRun is not supported"))
    assert status == ApiStatus(
        status="Failure", message="dryRun is not supported", reason="BadRequest", code=400
    )


# --- properties -----------------------------------------------------------------------------------

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["status", "reason", "message", "details", "causes", "code", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@PROPERTY
@given(st.binary(max_size=512))
def test_property_arbitrary_bytes_raise_only_remote_protocol_error(data):
    for parse in (parse_status, exit_status_from_json):
        with contextlib.suppress(RemoteProtocolError):
            parse(data)
    exit_status = exit_status_from_text(data)  # never raises
    assert exit_status.returncode is None or 0 <= exit_status.returncode <= 255


@PROPERTY
@given(json_values)
def test_property_arbitrary_json_raises_only_remote_protocol_error(value):
    try:
        exit_status = exit_status_from_json(json.dumps(value).encode())
    except RemoteProtocolError:
        return
    assert exit_status.returncode is None or 0 <= exit_status.returncode <= 255


@PROPERTY
@given(st.text(alphabet="0123456789-+. xe", max_size=6))
def test_property_exit_code_accepted_iff_decimal_0_to_255(text):
    valid = text.isdigit() and int(text) <= 255
    try:
        code = exit_status_from_json(nonzero(text)).returncode
    except RemoteProtocolError:
        assert not valid
    else:
        assert valid
        assert code == int(text)
