"""Handshake patterns and protocol names: the spec's tables (Noise §7) turned into data.

The patterns below are written in the spec's own notation and parsed once at import; the
handshake engine only ever walks the parsed tokens, so adding a pattern means adding its
table here, never code. Protocol names are parsed as Noise §8 defines them, and the
``pskN`` modifiers place ``psk`` tokens as Noise §9.4 says.

This module must never do crypto, IO or anything with keys: it is pure configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from ._errors import NoiseLocalError
from ._primitives import (
    CIPHER_FUNCTIONS,
    DH_FUNCTIONS,
    HASH_FUNCTIONS,
    CipherFunction,
    DHFunction,
    HashFunction,
)

__all__ = [
    "PATTERNS",
    "HandshakePattern",
    "MessagePattern",
    "NoiseProtocol",
    "Token",
    "parse_protocol_name",
]

Token = Literal["e", "s", "ee", "es", "se", "ss", "psk"]
_TOKENS: Final[frozenset[str]] = frozenset({"e", "s", "ee", "es", "se", "ss", "psk"})
_PRE_TOKENS: Final[frozenset[tuple[str, ...]]] = frozenset({("e",), ("s",), ("e", "s")})

# Noise §7.4 (one-way) and §7.5 (interactive, fundamental), verbatim in the spec's notation.
_SPEC_TABLES: Final = """
N:
  <- s
  ...
  -> e, es

K:
  -> s
  <- s
  ...
  -> e, es, ss

X:
  <- s
  ...
  -> e, es, s, ss

NN:
  -> e
  <- e, ee

NK:
  <- s
  ...
  -> e, es
  <- e, ee

NX:
  -> e
  <- e, ee, s, es

KN:
  -> s
  ...
  -> e
  <- e, ee, se

KK:
  -> s
  <- s
  ...
  -> e, es, ss
  <- e, ee, se

KX:
  -> s
  ...
  -> e
  <- e, ee, se, s, es

XN:
  -> e
  <- e, ee
  -> s, se

XK:
  <- s
  ...
  -> e, es
  <- e, ee
  -> s, se

XX:
  -> e
  <- e, ee, s, es
  -> s, se

IN:
  -> e, s
  <- e, ee, se

IK:
  <- s
  ...
  -> e, es, s, ss
  <- e, ee, se

IX:
  -> e, s
  <- e, ee, se, s, es
"""

_ONE_WAY: Final = frozenset({"N", "K", "X"})


@dataclass(frozen=True)
class MessagePattern:
    """One line of a pattern: who sends it (``->`` is the initiator) and its tokens."""

    from_initiator: bool
    tokens: tuple[Token, ...]

    def __post_init__(self) -> None:
        bad = [t for t in self.tokens if t not in _TOKENS]
        if bad:
            raise NoiseLocalError(f"unknown tokens {bad} in message pattern")


@dataclass(frozen=True)
class HandshakePattern:
    """A handshake pattern (Noise §7.1): pre-messages of each side, then the messages."""

    name: str
    initiator_pre: tuple[Token, ...]
    responder_pre: tuple[Token, ...]
    messages: tuple[MessagePattern, ...]
    one_way: bool = False

    def __post_init__(self) -> None:
        for pre in (self.initiator_pre, self.responder_pre):
            if pre and pre not in _PRE_TOKENS:
                raise NoiseLocalError(f"{self.name}: pre-message {pre} is not e, s or e, s")
        if not self.messages:
            raise NoiseLocalError(f"{self.name}: a pattern needs at least one message")
        # Noise §7.1: "The first actual message is always sent by the initiator", and then
        # the two sides alternate.
        for i, message in enumerate(self.messages):
            if message.from_initiator != (i % 2 == 0):
                raise NoiseLocalError(f"{self.name}: messages must alternate, initiator first")
        if self.one_way and len(self.messages) != 1:
            raise NoiseLocalError(f"{self.name}: a one-way pattern has exactly one message")

    @property
    def psk_count(self) -> int:
        """How many pre-shared keys the pattern consumes (one per ``psk`` token)."""
        return sum(m.tokens.count("psk") for m in self.messages)

    def sends(self, initiator: bool, token: Token) -> bool:
        """Whether the given side sends ``token`` (as a pre-message or in a message)."""
        pre = self.initiator_pre if initiator else self.responder_pre
        return token in pre or any(
            token in m.tokens for m in self.messages if m.from_initiator == initiator
        )

    def with_psk_modifiers(self, modifiers: tuple[str, ...]) -> HandshakePattern:
        """This pattern with ``psk0``, ``psk1``, … applied in order (Noise §9.4)."""
        messages = [list(m.tokens) for m in self.messages]
        for modifier in modifiers:
            match = re.fullmatch(r"psk(0|[1-9][0-9]*)", modifier)
            if match is None:
                raise NoiseLocalError(f"unsupported pattern modifier {modifier!r}")
            n = int(match.group(1))
            if n > len(messages):
                raise NoiseLocalError(
                    f"{modifier}: {self.name} has only {len(messages)} handshake messages"
                )
            # Noise §9.4: "psk0" places a "psk" token at the beginning of the first
            # handshake message; "psk1", "psk2", … place it at the end of that message.
            if n == 0:
                messages[0].insert(0, "psk")
            else:
                messages[n - 1].append("psk")
        pattern = HandshakePattern(
            name=self.name + "+".join(modifiers) if modifiers else self.name,
            initiator_pre=self.initiator_pre,
            responder_pre=self.responder_pre,
            messages=tuple(
                MessagePattern(m.from_initiator, tuple(tokens))
                for m, tokens in zip(self.messages, messages, strict=True)
            ),
            one_way=self.one_way,
        )
        pattern._check_psk_validity()
        return pattern

    def _check_psk_validity(self) -> None:
        # Noise §9.3: "A party may not send any encrypted data after it processes a "psk"
        # token unless it has previously sent an ephemeral public key (an "e" token),
        # either before or after the "psk" token." Every message ends with a payload.
        sent_e = {True: "e" in self.initiator_pre, False: "e" in self.responder_pre}
        psk_seen = False
        for message in self.messages:
            psk_seen = psk_seen or "psk" in message.tokens
            sent_e[message.from_initiator] |= "e" in message.tokens
            if psk_seen and not sent_e[message.from_initiator]:
                raise NoiseLocalError(f"{self.name} breaks the psk validity rule (Noise §9.3)")


def _parse_tables(text: str) -> dict[str, HandshakePattern]:
    patterns: dict[str, HandshakePattern] = {}
    for block in text.strip().split("\n\n"):
        header, *lines = [line.strip() for line in block.strip().splitlines()]
        name = header.rstrip(":")
        pre: list[MessagePattern] = []
        messages: list[MessagePattern] = []
        for line in lines:
            if line == "...":  # Noise §7.1: pre-messages end with "..."
                pre, messages = messages, []
                continue
            arrow, _, rest = line.partition(" ")
            tokens = tuple(t.strip() for t in rest.split(","))
            messages.append(MessagePattern(arrow == "->", tokens))  # type: ignore[arg-type]
        initiator_pre = next((m.tokens for m in pre if m.from_initiator), ())
        responder_pre = next((m.tokens for m in pre if not m.from_initiator), ())
        patterns[name] = HandshakePattern(
            name=name,
            initiator_pre=initiator_pre,
            responder_pre=responder_pre,
            messages=tuple(messages),
            one_way=name in _ONE_WAY,
        )
    return patterns


PATTERNS: Final[dict[str, HandshakePattern]] = _parse_tables(_SPEC_TABLES)
"""The supported base patterns by name, parsed from the spec's tables."""


@dataclass(frozen=True)
class NoiseProtocol:
    """A parsed protocol name: the pattern (modifiers applied) and the three functions."""

    name: str
    pattern: HandshakePattern
    dh: DHFunction
    cipher: CipherFunction
    hash: HashFunction


def parse_protocol_name(name: str) -> NoiseProtocol:
    """Parse ``Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b`` and the like (Noise §8).

    Raises :class:`NoiseLocalError` for anything unsupported or malformed.
    """
    if not isinstance(name, str) or not name.isascii():
        raise NoiseLocalError(f"protocol name must be an ASCII string: {name!r}")
    # Noise §8: "Noise_" then the pattern, DH, cipher and hash names separated by "_".
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "Noise":
        raise NoiseLocalError(f"not a Noise protocol name: {name!r}")
    _, pattern_part, dh_name, cipher_name, hash_name = parts
    # Noise §8: the pattern name is the base name followed by modifiers; the first modifier
    # is appended directly, the others are separated by "+".
    match = re.fullmatch(r"([A-Z][A-Z0-9]*)([a-z][a-z0-9+]*)?", pattern_part)
    if match is None:
        raise NoiseLocalError(f"malformed handshake pattern name {pattern_part!r}")
    base_name, modifier_text = match.group(1), match.group(2) or ""
    base = PATTERNS.get(base_name)
    if base is None:
        raise NoiseLocalError(f"unsupported handshake pattern {base_name!r}")
    modifiers = tuple(modifier_text.split("+")) if modifier_text else ()
    if len(set(modifiers)) != len(modifiers) or "" in modifiers:
        raise NoiseLocalError(f"malformed or repeated modifiers in {pattern_part!r}")
    try:
        dh = DH_FUNCTIONS[dh_name]
        cipher = CIPHER_FUNCTIONS[cipher_name]
        hash_ = HASH_FUNCTIONS[hash_name]
    except KeyError as exc:
        raise NoiseLocalError(f"unsupported function {exc.args[0]!r} in {name!r}") from None
    return NoiseProtocol(
        name=name,
        pattern=base.with_psk_modifiers(modifiers),
        dh=dh,
        cipher=cipher,
        hash=hash_,
    )
