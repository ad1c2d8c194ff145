"""The replicated history of a chat room: signed ops, hybrid logical clock, views, store.

Everything here is pure except `Store` and `History`, which persist to SQLite on a worker
thread and verify signatures on one thread per core.
"""

from ._history import History
from ._hlc import HLC, MAX_SKEW_MS, hlc_counter, hlc_millis, make_hlc
from ._identity import Identity, IdentityError, format_peer_id, parse_peer_id, verify_signature
from ._op import (
    MAX_BODY_BYTES,
    MAX_OP_BYTES,
    OP_VERSION,
    InvalidOp,
    Kind,
    Op,
    Reason,
    check_body,
    decode_op,
    encode_op,
)
from ._replica import Replica
from ._store import SCHEMA_VERSION, Store, StoreError
from ._verify import Verifier
from ._views import (
    ApplyResult,
    AuthorForked,
    Change,
    IngestReport,
    MemberJoined,
    MemberLeft,
    Message,
    MessageAdded,
    MessageChanged,
    NickChanged,
    OpDropped,
    Outcome,
    TopicChanged,
    message_row,
)

__all__ = [
    "HLC",
    "MAX_BODY_BYTES",
    "MAX_OP_BYTES",
    "MAX_SKEW_MS",
    "OP_VERSION",
    "SCHEMA_VERSION",
    "ApplyResult",
    "AuthorForked",
    "Change",
    "History",
    "Identity",
    "IdentityError",
    "IngestReport",
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
    "Store",
    "StoreError",
    "TopicChanged",
    "Verifier",
    "check_body",
    "decode_op",
    "encode_op",
    "format_peer_id",
    "hlc_counter",
    "hlc_millis",
    "make_hlc",
    "message_row",
    "parse_peer_id",
    "verify_signature",
]
