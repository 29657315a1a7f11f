"""Opening the LangGraph store that keeps the plan library, beside the checkpoints.

    async with open_store("checkpoints.sqlite") as store: ...   # checkpoints.plans.sqlite
    async with open_store("postgresql://planexec@db.internal/planexec") as store: ...
    graph = build_graph(checkpointer=saver, store=store)

A SQLite checkpoint file gets LangGraph's `AsyncSqliteStore` in a file beside it
(`library_path`). A `postgresql://` URL gets `AsyncPostgresStore` in the same database
as the checkpoints, its tables created or migrated by the store's own `setup()`. With
`index=`, the store embeds each entry's text and searches by meaning; SQLite needs the
`sqlite-vec` extension loaded for that, PostgreSQL the `vector` extension (pgvector).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, IndexConfig
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.postgres.base import PostgresIndexConfig
from langgraph.store.sqlite.aio import AsyncSqliteStore
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from planexec.checkpoints import is_postgres, postgres_pool
from planexec.errors import ModelConfigError, PlanexecError

__all__ = [
    "KNOWN_DIMENSIONS",
    "StoreError",
    "check_index_support",
    "embeddings_index",
    "library_path",
    "open_store",
]

KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
"""Vector sizes of embeddings models whose size is known; others are measured once."""

_SETUP_LOCK = 0x706C616E73746F72
"""Advisory lock key held while the store's tables are created (see `planexec.checkpoints`)."""


class StoreError(PlanexecError):
    """The library's store cannot be opened as asked."""


def library_path(checkpoint: str | os.PathLike[str]) -> Path:
    """The SQLite file of the plan library beside a checkpoint file: `<name>.plans.sqlite`."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}.plans{path.suffix or '.sqlite'}")


@asynccontextmanager
async def open_store(
    location: str | os.PathLike[str],
    *,
    index: IndexConfig | None = None,
    max_connections: int = 4,
    connect_timeout: float = 10.0,
) -> AsyncIterator[BaseStore]:
    """The plan library's store for the checkpoints at `location`, set up and open.

    Args:
        location: The checkpoint SQLite file (the store goes beside it) or a
            `postgresql://` URL (the store goes in the same database).
        index: An embeddings index for semantic search (`embeddings_index`).
        max_connections: The PostgreSQL pool's size.
        connect_timeout: Seconds to wait for the first PostgreSQL connection.

    Raises:
        StoreError: `index` was asked of a SQLite that cannot load extensions.
        psycopg.Error: The PostgreSQL server cannot be reached, or has no pgvector
            for an index.
    """
    if not is_postgres(location):
        if index is not None:
            check_index_support(location)
        async with AsyncSqliteStore.from_conn_string(
            os.fspath(library_path(location)), index=index
        ) as store:
            await store.setup()
            yield store
        return
    pg_index = cast("PostgresIndexConfig | None", index)

    async def setup(conn: AsyncConnection[DictRow]) -> None:
        await AsyncPostgresStore(conn, index=pg_index).setup()

    async with postgres_pool(
        str(location),
        setup=setup,
        lock=_SETUP_LOCK,
        max_connections=max_connections,
        connect_timeout=connect_timeout,
    ) as pool:
        yield AsyncPostgresStore(pool, index=pg_index)


def check_index_support(location: str | os.PathLike[str]) -> None:
    """Raise `StoreError` if the store at `location` cannot have an embeddings index here."""
    if not is_postgres(location) and not hasattr(sqlite3.Connection, "enable_load_extension"):
        raise StoreError(
            "semantic search needs the sqlite-vec extension, and this Python's sqlite3 "
            "cannot load extensions; unset the embeddings model to match plans by words"
        )


def embeddings_index(
    spec: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    timeout: float = 60.0,
) -> IndexConfig:
    """A store index that embeds each saved plan's `text` with the model `spec`.

    `spec` is "<provider>:<model>". The `openai` provider uses `langchain-openai`
    (any OpenAI-compatible server through `base_url`); others go through LangChain's
    `init_embeddings` (`pip install langchain` and the provider's package). A model
    whose vector size is not in `KNOWN_DIMENSIONS` is asked to embed one word to find it.
    """
    provider, _, model = spec.partition(":")
    if not provider or not model:
        raise ModelConfigError(
            f"embeddings model {spec!r} is not of the form <provider>:<model name>"
        )
    embed: Embeddings
    if provider == "openai":
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        if not api_key and not base_url:
            raise ModelConfigError(
                f"embeddings model {spec!r} needs OPENAI_API_KEY, or OPENAI_BASE_URL for "
                "an OpenAI-compatible server"
            )
        embed = OpenAIEmbeddings(
            model=model,
            # A local server may need no key, but the client insists on one.
            api_key=SecretStr(api_key or "unused"),
            base_url=base_url,
            timeout=timeout,
            # Counting tokens needs tiktoken's tables, which it downloads: send text as it is.
            check_embedding_ctx_length=False,
        )
    else:
        try:
            from langchain.embeddings import init_embeddings
        except ImportError as exc:
            raise ModelConfigError(
                f"embeddings model {spec!r} needs LangChain's init_embeddings: "
                "pip install langchain"
            ) from exc
        try:
            embed = init_embeddings(spec)
        except ImportError as exc:  # the provider's package is missing
            raise ModelConfigError(f"embeddings model {spec!r}: {exc}") from exc
    dims = KNOWN_DIMENSIONS.get(model) or len(embed.embed_query("planexec"))
    return {"dims": dims, "embed": embed, "fields": ["text"]}
