"""Secret: credentials in a private, non-dumpable mapping, swapped into requests on the way out."""

from __future__ import annotations

import base64
import binascii
import ctypes
import json
import pickle
import sys

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from k8sstream import ConfigError
from k8sstream._secret import Secret, b64decode, basic_credentials, substitute
from k8sstream.config import load_kubeconfig


def test_a_secret_holds_its_value_but_never_shows_it():
    secret = Secret.join("Bearer ", b"abc", Secret("def"))
    assert bytes(secret.view()) == b"Bearer abcdef" and len(secret) == 13 and secret
    assert secret == Secret("Bearer abcdef") and secret != Secret("Bearer abcdeF")
    assert secret.reveal() == "Bearer abcdef"
    assert "abc" not in repr(secret) + str(secret)
    assert not Secret() and Secret("ünï") == Secret("ünï".encode())
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_wipe_zeroes_and_unmaps_the_value():
    secret = Secret("wipe-me")
    mapping = secret._mapping
    secret.wipe()
    assert mapping.closed
    with pytest.raises(ValueError):
        secret.view()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps is Linux")
def test_the_mapping_is_left_out_of_core_dumps():
    secret = Secret("not-in-a-core-dump")
    address = ctypes.addressof(ctypes.c_char.from_buffer(secret._mapping))
    flags = None
    with open("/proc/self/smaps") as smaps:
        inside = False
        for line in smaps:
            head = line.split()[0]
            if "-" in head and not head.endswith(":"):
                low, high = (int(part, 16) for part in head.split("-"))
                inside = low <= address < high
            elif inside and head == "VmFlags:":
                flags = line.split()[1:]
                break
    assert flags is not None and "dd" in flags  # "dd": do not include in core dumps


def test_substitute_swaps_placeholders_for_values():
    token = Secret("Bearer t0k3n")
    request = f"GET / HTTP/1.1\r\nAuthorization: {token.placeholder}\r\n\r\n".encode()
    assert token.placeholder.encode() in request and b"t0k3n" not in request
    sent = substitute(request)
    assert sent is not None
    assert bytes(sent.view()) == b"GET / HTTP/1.1\r\nAuthorization: Bearer t0k3n\r\n\r\n"
    assert substitute(b"GET / HTTP/1.1\r\n\r\n") is None
    # A released secret's placeholder is left as it is: the server refuses it, nothing leaks.
    stale = token.placeholder.encode()
    token.wipe()
    assert substitute(b"Authorization: " + stale) is None


def test_read_file_reads_straight_into_the_mapping(tmp_path):
    path = tmp_path / "token"
    path.write_bytes(b"\n  tok-en \t\r\n")
    assert Secret.read_file(str(path)).reveal() == "tok-en"
    assert Secret.read_file(str(path), strip=False).reveal() == "\n  tok-en \t\r\n"
    path.write_bytes(b"x" * 101)
    with pytest.raises(OSError, match="larger than 100 bytes"):
        Secret.read_file(str(path), limit=100)


@given(st.text(max_size=40), st.text(max_size=40))
def test_basic_credentials_match_the_standard_encoding(username, password):
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    assert basic_credentials(username, password).reveal() == expected


@given(st.binary(max_size=200))
def test_b64decode_round_trips(data):
    decoded = b64decode(Secret(base64.b64encode(data)))
    assert bytes(decoded.view()) == data


@given(st.text(alphabet="AQgw+/=a*\n", max_size=16))
def test_b64decode_is_the_standard_decoder_without_its_leniency(text):
    try:
        expected = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    try:
        secret = b64decode(Secret(text))
        decoded = bytes(secret.view())
    except ValueError:
        decoded = None
    # What it accepts decodes as the standard library does; it refuses everything the
    # standard library refuses, and also excess padding ("AAAA="), as Go's decoder does.
    assert decoded == expected or (decoded is None and text.rstrip("=") != text)


TOKEN = "eyJhbGciOi.JSUzI1NiJ9-_x~y+z/w="


def kubeconfig_doc(user: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://127.0.0.1:6443",
                    "extensions": [
                        {
                            "name": "client.authentication.k8s.io/exec",
                            "extension": {"token": "not-a-credential"},
                        }
                    ],
                },
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }


@pytest.mark.parametrize(
    "style",
    ["block", "double-quoted", "single-quoted", "json", "indented"],
)
def test_inline_credentials_are_lifted_out_before_yaml_parses_the_file(tmp_path, style):
    pem = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n"
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": "true",
        "interactiveMode": "Never",
    }
    doc = kubeconfig_doc({"token": TOKEN, "exec": plugin})
    if style == "json":
        text = json.dumps(doc, indent=2)
    else:
        text = yaml.safe_dump(doc, default_style='"' if style == "double-quoted" else None)
        if style == "single-quoted":
            text = text.replace(f"token: {TOKEN}", f"token: '{TOKEN}'")
        if style == "indented":
            text = "".join("  " + line for line in text.splitlines(True))
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    config = load_kubeconfig(str(path))
    assert isinstance(config.token, Secret) and config.token.reveal() == TOKEN
    # Only a user's credential fields are lifted; the same key elsewhere keeps its value.
    assert config.exec_plugin is not None
    assert config.exec_plugin.cluster_config == {"token": "not-a-credential"}

    key_user = {"username": "admin", "password": "s3cret-pw", "client-key-data": ""}
    key_user["client-key-data"] = base64.b64encode(pem).decode()
    key_user["client-certificate-data"] = base64.b64encode(b"cert").decode()
    path.write_text(yaml.safe_dump(kubeconfig_doc(key_user)))
    config = load_kubeconfig(str(path))
    assert isinstance(config.client_key_data, Secret)
    assert bytes(config.client_key_data.view()) == pem
    assert isinstance(config.password, Secret) and config.password.reveal() == "s3cret-pw"


def test_a_lifted_client_key_that_is_not_base64_is_a_config_error(tmp_path):
    user = {"client-certificate-data": "Y2VydA==", "client-key-data": "bm90=YmFzZTY0"}
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig_doc(user)))
    with pytest.raises(ConfigError, match="client-key-data is not valid base64"):
        load_kubeconfig(str(path))


def test_a_kubeconfig_that_is_not_utf8_still_loads(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_bytes(yaml.safe_dump(kubeconfig_doc({"token": TOKEN})).encode("utf-16"))
    config = load_kubeconfig(str(path))
    assert isinstance(config.token, Secret) and config.token.reveal() == TOKEN


def test_lifting_keeps_yaml_meaning(tmp_path):
    path = tmp_path / "kubeconfig"
    for written, expected in [
        ("token: null", None),
        ("token: ~", None),
        ("token: 'it''s'", "it's"),  # an escaped quote: YAML reads it
        ('token: "tab\\there"', "tab\there"),  # an escape sequence: YAML reads it
        ('token: "p@ss w0rd: #1!"', "p@ss w0rd: #1!"),
        ("token: abc  # a comment", "abc"),
    ]:
        doc = yaml.safe_dump(kubeconfig_doc({"token": "PLACE"})).replace("token: PLACE", written)
        path.write_text(doc)
        config = load_kubeconfig(str(path))
        got = config.token.reveal() if isinstance(config.token, Secret) else config.token
        assert got == expected, written


def test_a_token_file_over_the_limit_is_a_clear_config_error(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_bytes(b"x" * ((1 << 20) + 1))
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig_doc({"tokenFile": str(token_file)})))
    with pytest.raises(ConfigError, match="larger than 1048576 bytes"):
        load_kubeconfig(str(path))


@pytest.mark.parametrize(
    "status, token",
    [
        ({"token": "plugin\\/tok\\\\en\\n"}, "Bearer plugin/tok\\en\n"),
        ({"token": "tok\\u00e9"}, "Bearer toké"),  # left to json: \\u escapes are not lifted
        ({"token": ""}, None),
    ],
)
def test_exec_plugin_output_is_lifted_and_unescaped(tmp_path, status, token):
    import k8sstream

    output = (
        json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"})[:-1]
        + ', "status": {'
        + ", ".join(f'"{k}": "{v}"' for k, v in status.items())
        + "}}"
    )
    (tmp_path / "credential.json").write_text(output)
    script = tmp_path / "plugin"
    script.write_text(f"#!/bin/sh\nexec cat '{tmp_path / 'credential.json'}'\n")
    script.chmod(0o755)
    plugin = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": str(script),
        "interactiveMode": "Never",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig_doc({"exec": plugin})))
    with k8sstream.Client.from_kubeconfig(str(path)) as client:
        if token is None:
            with pytest.raises(ConfigError, match="neither a token nor a client certificate"):
                client._auth.credential()
        else:
            credential = client._auth.credential()
            assert credential is not None and credential.reveal() == token
