"""How checkpoints are written and read: checked always, encrypted when given a key.

`checkpoint_serde()` is LangGraph's `JsonPlusSerializer` whose reads fail closed: a
value that does not load (a truncated or corrupt blob) raises `CheckpointError`
instead of some decoder's error, so a run never starts on it. Without a key, a change
that still decodes cannot be noticed: for that, give a key.

`checkpoint_serde(key)` wraps it in LangGraph's `EncryptedSerializer` with AES-256-GCM
(from the `cryptography` package: `pip install 'planexec[encryption]'`). Every value
is encrypted and authenticated together with its stored type, so a changed byte or
type, a wrong key, or a value that was written without encryption (or swapped in from
elsewhere unencrypted) raises `CheckpointError`. What it cannot see is a whole valid
value moved from another row written with the same key (an older checkpoint of the
thread, say): the serializer is not told which row it reads. The key is any secret
string, best a long random one (`openssl rand -hex 32`); the command line reads it
from `PLANEXEC_CHECKPOINT_KEY`.
The saver's metadata column is not encrypted: keep secrets out of checkpoint metadata
(`metadata_seal` signs what planexec keeps there instead).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from planexec.cipher import CIPHER, TAMPERED, AesGcm, Decrypted, derive
from planexec.errors import CheckpointError

__all__ = ["CIPHER", "CheckedSerializer", "checkpoint_serde", "metadata_seal"]


class CheckedSerializer(JsonPlusSerializer):
    """`JsonPlusSerializer` whose reads raise `CheckpointError` on anything unreadable.

    With `sealed`, it is the serializer inside an `EncryptedSerializer`: it writes each
    value's type into the bytes that get encrypted, so that the type is authenticated
    too (a type changed in the database, to `null` say, is refused instead of loading
    as something else), and it refuses every value that did not come through the cipher.
    Being the inner serializer, it keeps doing so in the copies LangGraph makes of it
    (strict msgpack's allowlist rebuilds the `EncryptedSerializer` around a copy).
    """

    def __init__(self, *, sealed: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sealed = sealed

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Serialize `obj`; when sealed, its type is prefixed to the bytes."""
        kind, data = super().dumps_typed(obj)
        return (kind, kind.encode() + b"\0" + data) if self.sealed else (kind, data)

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """The value of a saved `(type, bytes)` pair, or `CheckpointError`."""
        kind, raw = data
        if self.sealed:
            if not isinstance(raw, Decrypted):
                raise CheckpointError(
                    f"a checkpoint value ({kind}) is not encrypted, but a checkpoint key is "
                    "set: it was written without the key, or replaced; refusing to read it"
                )
            written, _, raw = bytes(raw).partition(b"\0")
            if written != kind.encode():
                raise CheckpointError(TAMPERED)
        elif "+" in kind:
            # LangGraph's EncryptedSerializer writes "<type>+<cipher>"; read without one,
            # such a value would otherwise be reported as corrupt.
            raise CheckpointError(
                f"a checkpoint value is encrypted ({kind}), but no checkpoint key is set: give "
                "the key it was written with (PLANEXEC_CHECKPOINT_KEY); refusing to read it"
            )
        try:
            return super().loads_typed((kind, raw))
        except Exception as exc:
            raise CheckpointError(
                f"a checkpoint value ({kind}, {len(raw or b'')} bytes) cannot be read: it is "
                f"corrupt or truncated ({type(exc).__name__}); refusing to run on it"
            ) from exc


def checkpoint_serde(key: str | bytes | None = None) -> SerializerProtocol:
    """The serializer for a planexec checkpointer: checked, and encrypted with `key` if given."""
    if key is None:
        return CheckedSerializer()
    return EncryptedSerializer(AesGcm(key), CheckedSerializer(sealed=True))


def metadata_seal(key: str | bytes, *values: str) -> str:
    """A signature of `values` under `key`, for what planexec keeps in checkpoint metadata.

    Metadata is not encrypted with the checkpoint's values; the signature lets a reader
    that has the key notice a change.
    """
    mac = hmac.new(derive(key, b"metadata"), digestmod=hashlib.sha256)
    for value in values:
        mac.update(value.encode())
        mac.update(b"\0")
    return mac.hexdigest()
