"""The control API's wire format, sans-IO: frames as frozen dataclasses, to and from bytes.

A frame is one WebSocket binary message holding one msgpack array whose first element is
the protocol version (`PROTOCOL_VERSION`) and whose second names the frame::

    client -> server
      [1, "hello", token]                       first frame: the data dir's control.token
      [1, "call", id, method, {arg: value}]     a ChatClient method (or subscribe/unsubscribe)
    server -> client
      [1, "welcome", peer_id]                   the token was right; calls may follow
      [1, "result", id, value]                  the call `id` returned `value`
      [1, "failure", id, message]               the node refused call `id` (a ClientError)
      [1, "event", subscription, event]         a ClientEvent for the subscribe call `subscription`
      [1, "refusal", code, message]             the connection is refused; it closes next

Values are msgpack natives (bin for bytes, str, int, bool, nil, arrays); every data type
of `ChatClient` (and crdt's `Message` and change events, `NodeStatus`, `RoomStatus`) is a
map of its fields plus `"type": "<ClassName>"`; crdt's `Reason` is its string value.
Method names, argument names and result types are `ChatClient`'s own, read from its
annotations, so the wire cannot drift from the interface.

The decoders' one promise (h11's): any bytes either decode to a frame whose every value
has the type the interface declares, or raise `ControlProtocolError`, the remote side's
fault. The size limit is checked before a byte is decoded. Encoding a frame that breaks
the rules is our own bug: `ValueError`/`TypeError`. This module never does IO.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from ._api import ChatClient, ClientEvent

__all__ = [
    "MAX_CLIENT_FRAME",
    "MAX_SERVER_FRAME",
    "METHODS",
    "PROTOCOL_VERSION",
    "Call",
    "ClientFrame",
    "ControlProtocolError",
    "Event",
    "Failure",
    "Hello",
    "Refusal",
    "RefusalCode",
    "Result",
    "ServerFrame",
    "Welcome",
    "decode_client_frame",
    "decode_server_frame",
    "dump_value",
    "encode_frame",
    "load_result",
]

PROTOCOL_VERSION: Final = 1
# A request carries at most a message (12 KiB of text) or an invite: 64 KiB is ample.
MAX_CLIENT_FRAME: Final = 64 * 1024
# A page of 1000 messages of up to 12 KiB each, with room to spare.
MAX_SERVER_FRAME: Final = 32 * 1024 * 1024
MAX_TOKEN: Final = 256
MAX_ID: Final = (1 << 63) - 1
# Events flow from a `subscribe` call's result on, tagged with that call's id, until an
# `unsubscribe` names it: the client knows the tag before the first event can arrive.
SUBSCRIBE: Final = "subscribe"  # () -> None
UNSUBSCRIBE: Final = "unsubscribe"  # (subscription: the subscribe call's id) -> None


class RefusalCode(enum.StrEnum):
    """Why the server refused a connection (the `code` of a refusal frame); stable."""

    BAD_FRAME = "bad_frame"  # not a frame, or not one this side may send now
    TOO_LARGE = "too_large"  # a frame over the size limit
    VERSION = "version"  # a protocol version this side does not speak
    UNAUTHORIZED = "unauthorized"  # a wrong or missing token
    NOT_LOOPBACK = "not_loopback"  # a client not on loopback, which the operator did not allow
    TIMEOUT = "timeout"  # the handshake took too long
    BUSY = "busy"  # too many connections in handshake
    TOO_SLOW = "too_slow"  # frames to the client piled up unread
    SHUTTING_DOWN = "shutting_down"


class ControlProtocolError(Exception):
    """Bytes from the other side that are not an acceptable frame: the remote's fault.

    `code` says what to answer (a refusal frame of that code, then close)."""

    def __init__(self, message: str, code: RefusalCode = RefusalCode.BAD_FRAME) -> None:
        super().__init__(message)
        self.code = code


# -- frames -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    token: str

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or len(self.token) > MAX_TOKEN:
            raise ValueError("a token is a string of at most 256 characters")


@dataclass(frozen=True, slots=True)
class Welcome:
    peer_id: bytes


@dataclass(frozen=True, slots=True)
class Call:
    """A call of `method` with keyword `args` (checked against the method's signature)."""

    id: int
    method: str
    args: Mapping[str, object] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id(self.id)
        method = METHODS.get(self.method)
        if method is None:
            raise ValueError(f"no method {self.method!r}")
        # A frozen copy, checked: what a Call holds is what the method takes.
        object.__setattr__(self, "args", types.MappingProxyType(method.check_args(self.args)))


@dataclass(frozen=True, slots=True)
class Result:
    """What call `id` returned, as a wire value: `load_result` gives it its type."""

    id: int
    value: object

    def __post_init__(self) -> None:
        _check_id(self.id)


@dataclass(frozen=True, slots=True)
class Failure:
    id: int
    message: str

    def __post_init__(self) -> None:
        _check_id(self.id)


@dataclass(frozen=True, slots=True)
class Event:
    subscription: int
    event: ClientEvent

    def __post_init__(self) -> None:
        _check_id(self.subscription)


@dataclass(frozen=True, slots=True)
class Refusal:
    code: RefusalCode
    message: str


ClientFrame = Hello | Call
ServerFrame = Welcome | Result | Failure | Event | Refusal


def _check_id(value: object) -> None:
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise ValueError(f"an id is an int 0..2**63-1, not {value!r}")


# -- values: typed, by the annotations of the interface and its data types ----------------


def dump_value(value: object) -> object:
    """A value of the interface as msgpack natives (dataclasses as tagged maps)."""
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return value  # (a StrEnum such as Reason is a str)
    if isinstance(value, (tuple, list)):
        return [dump_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data: dict[str, object] = {"type": type(value).__name__}
        for field in dataclasses.fields(value):
            data[field.name] = dump_value(getattr(value, field.name))
        return data
    raise TypeError(f"no wire form for {type(value).__name__}")


def _load(value: object, tp: Any) -> Any:
    """`value` (msgpack natives) as type `tp`, or ControlProtocolError."""
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        arms = typing.get_args(tp)
        if isinstance(value, dict):
            name = value.get("type")
            for arm in arms:
                if isinstance(arm, type) and arm.__name__ == name:
                    return _load(value, arm)
        for arm in arms:
            try:
                return _load(value, arm)
            except ControlProtocolError:
                continue
        raise ControlProtocolError(f"expected {_name(tp)}, got {_what(value)}")
    if origin is tuple or origin is list:
        if not isinstance(value, list):
            raise ControlProtocolError(f"expected an array, got {_what(value)}")
        args = typing.get_args(tp)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            items = [_load(item, args[0]) for item in value]
        else:
            if len(value) != len(args):
                raise ControlProtocolError(f"expected {len(args)} items, got {len(value)}")
            items = [_load(item, arg) for item, arg in zip(value, args, strict=True)]
        return items if origin is list else tuple(items)
    if tp is type(None):
        if value is not None:
            raise ControlProtocolError(f"expected nil, got {_what(value)}")
        return None
    if tp is bool or tp is str or tp is bytes:
        if type(value) is not tp:
            raise ControlProtocolError(f"expected {tp.__name__}, got {_what(value)}")
        return value
    if tp is int:
        if type(value) is not int:
            raise ControlProtocolError(f"expected int, got {_what(value)}")
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ControlProtocolError(f"not a {tp.__name__}: {_what(value)}") from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _load_dataclass(value, tp)
    raise TypeError(f"no wire form for {tp!r}")  # a type of ours the codec lacks: our bug


_HINTS: dict[type, dict[str, Any]] = {}


def _load_dataclass(value: object, cls: type) -> Any:
    if not isinstance(value, dict) or value.get("type") != cls.__name__:
        raise ControlProtocolError(f"expected a {cls.__name__} map, got {_what(value)}")
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = set(value) - set(fields) - {"type"}
    if unknown:
        raise ControlProtocolError(f"{cls.__name__} has no field {sorted(map(str, unknown))[0]}")
    kwargs: dict[str, object] = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = _load(value[name], hints[name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ControlProtocolError(f"{cls.__name__} lacks its field {name}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # its own validation refused the values
        raise ControlProtocolError(f"bad {cls.__name__}: {exc}") from None


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _what(value: object) -> str:
    return type(value).__name__


# -- methods: ChatClient's, by its annotations ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Method:
    name: str
    params: Mapping[str, Any]  # name -> type
    required: frozenset[str]
    returns: Any

    def check_args(self, args: Mapping[str, object]) -> dict[str, object]:
        """The args, checked by our own rules: ValueError for a bad call (our bug)."""
        try:
            return self.load_args(dict(args))
        except ControlProtocolError as exc:
            raise ValueError(str(exc)) from None

    def load_args(self, args: object) -> dict[str, object]:
        if not isinstance(args, dict):
            raise ControlProtocolError(f"{self.name}: arguments are a map, not {_what(args)}")
        unknown = set(args) - set(self.params)
        if unknown:
            raise ControlProtocolError(
                f"{self.name} takes no argument {sorted(map(str, unknown))[0]}"
            )
        missing = self.required - set(args)
        if missing:
            raise ControlProtocolError(f"{self.name} needs the argument {sorted(missing)[0]}")
        loaded: dict[str, object] = {}
        for name, value in args.items():
            try:
                loaded[name] = _load(value, self.params[name])
            except ControlProtocolError as exc:
                raise ControlProtocolError(f"{self.name}({name}): {exc}") from None
        return loaded


def _methods() -> dict[str, _Method]:
    methods: dict[str, _Method] = {}
    for name, function in inspect.getmembers(ChatClient, inspect.isfunction):
        if name.startswith("_") or name == "events":
            continue
        hints = typing.get_type_hints(function)
        signature = inspect.signature(function)
        params = {p: hints[p] for p in signature.parameters if p != "self"}
        required = frozenset(
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.default is inspect.Parameter.empty
        )
        methods[name] = _Method(name, params, required, hints["return"])
    methods[SUBSCRIBE] = _Method(SUBSCRIBE, {}, frozenset(), type(None))
    params = {"subscription": int}
    methods[UNSUBSCRIBE] = _Method(UNSUBSCRIBE, params, frozenset(params), type(None))
    return methods


METHODS: Final[Mapping[str, _Method]] = types.MappingProxyType(_methods())


def load_result(method: str, value: object) -> Any:
    """A result's wire value as the type `method` returns; ControlProtocolError if not."""
    return _load(value, METHODS[method].returns)


# -- frames to and from bytes -------------------------------------------------------------


def encode_frame(frame: ClientFrame | ServerFrame) -> bytes:
    """The bytes of one frame."""
    match frame:
        case Hello(token):
            body: list[object] = ["hello", token]
        case Welcome(peer_id):
            body = ["welcome", peer_id]
        case Call(id, method, args):
            body = ["call", id, method, {k: dump_value(v) for k, v in args.items()}]
        case Result(id, value):
            body = ["result", id, dump_value(value)]
        case Failure(id, message):
            body = ["failure", id, message]
        case Event(subscription, event):
            body = ["event", subscription, dump_value(event)]
        case Refusal(code, message):
            body = ["refusal", code.value, message]
        case _:
            raise TypeError(f"not a frame: {frame!r}")
    data: bytes = msgpack.packb([PROTOCOL_VERSION, *body], use_bin_type=True)
    return data


def _unpack(data: bytes, limit: int) -> list[object]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ControlProtocolError(f"a frame is binary, not {_what(data)}")
    if len(data) > limit:
        raise ControlProtocolError(
            f"frame of {len(data)} bytes is over the limit of {limit}", RefusalCode.TOO_LARGE
        )
    try:
        # raw=False: str is UTF-8; strict_map_key: map keys are str or bytes only.
        frame = msgpack.unpackb(bytes(data), raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types (and ValueError subclasses)
        raise ControlProtocolError(f"not a msgpack frame ({type(exc).__name__})") from None
    if not isinstance(frame, list) or len(frame) < 2:
        raise ControlProtocolError("a frame is an array [version, kind, ...]")
    version = frame[0]
    if type(version) is not int:
        raise ControlProtocolError("a frame starts with its protocol version")
    if version != PROTOCOL_VERSION:
        raise ControlProtocolError(
            f"protocol version {version}; this side speaks {PROTOCOL_VERSION}",
            RefusalCode.VERSION,
        )
    return frame[1:]


def _shape(body: list[object], kind: str, count: int) -> None:
    if len(body) != count + 1:
        raise ControlProtocolError(f"a {kind} frame has {count} fields, not {len(body) - 1}")


def _build(cls: type[Any], *args: object) -> Any:
    try:
        return cls(*args)
    except (ValueError, TypeError) as exc:
        raise ControlProtocolError(f"bad {cls.__name__.lower()} frame: {exc}") from None


def decode_client_frame(data: bytes) -> ClientFrame:
    """A frame a client sent: `Hello` or `Call`; ControlProtocolError for anything else."""
    body = _unpack(data, MAX_CLIENT_FRAME)
    kind = body[0]
    if kind == "hello":
        _shape(body, "hello", 1)
        if not isinstance(body[1], str) or len(body[1]) > MAX_TOKEN:
            raise ControlProtocolError("a hello carries a token string", RefusalCode.UNAUTHORIZED)
        return Hello(body[1])
    if kind == "call":
        _shape(body, "call", 3)
        call_id, method_name, args = body[1:]
        if not isinstance(method_name, str) or method_name not in METHODS:
            raise ControlProtocolError(f"no method {method_name!r}")
        loaded = METHODS[method_name].load_args(args)
        call: Call = _build(Call, call_id, method_name, loaded)
        return call
    raise ControlProtocolError(f"not a frame a client sends: {_short(kind)}")


def decode_server_frame(data: bytes) -> ServerFrame:
    """A frame a server sent; ControlProtocolError for anything else."""
    body = _unpack(data, MAX_SERVER_FRAME)
    kind = body[0]
    frame: ServerFrame
    if kind == "welcome":
        _shape(body, "welcome", 1)
        frame = _build(Welcome, _load(body[1], bytes))
    elif kind == "result":
        _shape(body, "result", 2)
        frame = _build(Result, body[1], body[2])
    elif kind == "failure":
        _shape(body, "failure", 2)
        frame = _build(Failure, body[1], _load(body[2], str))
    elif kind == "event":
        _shape(body, "event", 2)
        frame = _build(Event, body[1], _load(body[2], ClientEvent))
    elif kind == "refusal":
        _shape(body, "refusal", 2)
        code = _load(body[1], str)
        try:
            refusal_code = RefusalCode(code)
        except ValueError:
            refusal_code = RefusalCode.BAD_FRAME  # a newer server's reason: still a refusal
        frame = _build(Refusal, refusal_code, _load(body[2], str))
    else:
        raise ControlProtocolError(f"not a frame a server sends: {_short(kind)}")
    return frame


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
