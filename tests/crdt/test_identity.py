"""Identities: key files, permissions, printable peer ids."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crdt import Identity, IdentityError, format_peer_id, parse_peer_id, verify_signature


def test_save_and_load_give_the_same_key(tmp_path: Path) -> None:
    me = Identity.generate()
    path = tmp_path / "keys" / "identity.pem"
    me.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Identity.load(path)
    assert again.peer_id == me.peer_id
    signature = again.sign(b"message")
    assert verify_signature(me.peer_id, signature, b"message")
    assert not verify_signature(me.peer_id, signature, b"other message")
    assert again.private_key.public_key().public_bytes_raw() == me.peer_id
    assert [p.name for p in path.parent.iterdir()] == ["identity.pem"]  # no temp files left


def test_save_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    first = Identity.load_or_create(path)
    with pytest.raises(IdentityError, match="refusing to overwrite"):
        Identity.generate().save(path)
    assert Identity.load_or_create(path).peer_id == first.peer_id


def test_load_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "identity.pem"
    Identity.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        Identity.load(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key at all", "not an unencrypted PEM"),
        (b"", "not an unencrypted PEM"),
    ],
)
def test_load_refuses_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "identity.pem"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match=message):
        Identity.load(path)


def test_load_refuses_other_key_types(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "identity.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="not Ed25519"):
        Identity.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no identity"):
        Identity.load(tmp_path / "nothing.pem")


def test_peer_id_text_round_trip() -> None:
    me = Identity.generate()
    text = me.peer_id_text
    assert len(text) == 52 and text == text.lower() and "=" not in text
    assert parse_peer_id(text) == me.peer_id
    assert parse_peer_id(text.upper()) == me.peer_id
    assert format_peer_id(me.peer_id) == text
    assert repr(me) == f"Identity({text[:8]})"


@pytest.mark.parametrize("text", ["", "abc", "!" * 52, "a" * 53, "a" * 51 + "1"])
def test_parse_peer_id_refuses_junk(text: str) -> None:
    with pytest.raises(IdentityError, match="not a peer id"):
        parse_peer_id(text)
