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
import os
from typing import Any

from langgraph.checkpoint.serde.base import CipherProtocol, SerializerProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from planexec.errors import CheckpointError, ModelConfigError

__all__ = ["CIPHER", "CheckedSerializer", "checkpoint_serde", "metadata_seal"]

CIPHER = "aesgcm"
"""The cipher name LangGraph appends to each value's type (`msgpack+aesgcm`)."""

_NONCE = 12


class _Decrypted(bytes):
    """Bytes that came out of the cipher, and so were encrypted and authenticated."""


def _secret(key: str | bytes) -> bytes:
    secret = key.encode() if isinstance(key, str) else bytes(key)
    if not secret:
        raise ValueError("the checkpoint key is empty")
    return secret


def _derive(key: str | bytes, purpose: bytes) -> bytes:
    return hashlib.sha256(b"planexec checkpoint " + purpose + b"\0" + _secret(key)).digest()


_TAMPERED = (
    "a checkpoint value failed its integrity check: it was changed or corrupted, "
    "or the key (PLANEXEC_CHECKPOINT_KEY) is not the one it was written with"
)


class _AesGcm(CipherProtocol):
    """AES-256-GCM; the key is derived from the secret with SHA-256."""

    def __init__(self, key: str | bytes) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:  # pragma: no cover - the dev environment has it
            raise ModelConfigError(
                "encrypted checkpoints need the cryptography package: "
                "pip install 'planexec[encryption]'"
            ) from exc
        self._aead = AESGCM(_derive(key, b"encryption"))

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        """Encrypt and authenticate `plaintext`."""
        nonce = os.urandom(_NONCE)
        return CIPHER, nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        """The plaintext of `ciphertext`, if it is what `encrypt` returned."""
        from cryptography.exceptions import InvalidTag

        if ciphername != CIPHER:
            raise CheckpointError(
                f"a checkpoint value is encrypted with {ciphername!r}, not planexec's "
                f"{CIPHER!r}; refusing to read it"
            )
        try:
            plain = self._aead.decrypt(bytes(ciphertext[:_NONCE]), bytes(ciphertext[_NONCE:]), None)
        except (InvalidTag, ValueError) as exc:
            raise CheckpointError(_TAMPERED) from exc
        return _Decrypted(plain)


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
            if not isinstance(raw, _Decrypted):
                raise CheckpointError(
                    f"a checkpoint value ({kind}) is not encrypted, but a checkpoint key is "
                    "set: it was written without the key, or replaced; refusing to read it"
                )
            written, _, raw = bytes(raw).partition(b"\0")
            if written != kind.encode():
                raise CheckpointError(_TAMPERED)
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
    return EncryptedSerializer(_AesGcm(key), CheckedSerializer(sealed=True))


def metadata_seal(key: str | bytes, *values: str) -> str:
    """A signature of `values` under `key`, for what planexec keeps in checkpoint metadata.

    Metadata is not encrypted with the checkpoint's values; the signature lets a reader
    that has the key notice a change.
    """
    mac = hmac.new(_derive(key, b"metadata"), digestmod=hashlib.sha256)
    for value in values:
        mac.update(value.encode())
        mac.update(b"\0")
    return mac.hexdigest()
