"""The fast masking against websocket-client's reference implementation."""

from __future__ import annotations

import os

import pytest
from websocket._abnf import ABNF

from k8sstream._masking import client_frame, mask


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 125, 126, 127, 65535, 65536, 65537, 100_003])
def test_mask_and_frame_match_websocket_client(length):
    data, key = os.urandom(length), os.urandom(4)
    assert mask(key, data) == ABNF.mask(key, data)
    assert mask(key, mask(key, data)) == data
    reference = ABNF.create_frame(data, ABNF.OPCODE_BINARY)
    reference.get_mask_key = lambda n: key
    assert client_frame(ABNF.OPCODE_BINARY, data, key) == reference.format()
