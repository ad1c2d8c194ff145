"""The public surface of each package: what `__all__` promises exists, and nothing leaks."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "crdt": {
        "HLC",
        "IngestReport",
        "MAX_BODY_BYTES",
        "MAX_OP_BYTES",
        "MAX_SKEW_MS",
        "OP_VERSION",
        "ApplyResult",
        "AuthorForked",
        "Change",
        "Identity",
        "IdentityError",
        "InvalidOp",
        "Kind",
        "MemberJoined",
        "MemberLeft",
        "Message",
        "MessageAdded",
        "MessageChanged",
        "NickChanged",
        "Op",
        "OpDropped",
        "Outcome",
        "Reason",
        "Replica",
        "TopicChanged",
        "check_body",
        "decode_op",
        "encode_op",
        "format_peer_id",
        "hlc_counter",
        "message_row",
        "hlc_millis",
        "make_hlc",
        "parse_peer_id",
        "verify_signature",
        "History",
        "Store",
        "StoreError",
        "Verifier",
        "SCHEMA_VERSION",
    },
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_public_names(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == EXPECTED[package]
    for name in module.__all__:
        assert getattr(module, name) is not None
    public = {n for n in vars(module) if not n.startswith("_")}
    assert public - set(module.__all__) == set(), "public names outside __all__"
