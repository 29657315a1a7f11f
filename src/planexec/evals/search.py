"""A small search index over fixed documents, with room for a planted misleading result.

Ranking is deterministic: a document scores one point per distinct query term found in
its title or text, plus its `boost` if it matched at all; ties keep document order. A
boosted document that is out of date is the "misleading result" a later step must
contradict.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from planexec.evals.toolkit import FactoryConfig, ToolFactory, logged
from planexec.evals.world import World

SNIPPET = 220
"""Characters of a document's text shown in a search result."""
_STOP = frozenset({"a", "an", "and", "for", "in", "is", "of", "on", "or", "the", "to", "what"})


class Document(BaseModel):
    """One document of the index."""

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    text: str


class SearchConfig(FactoryConfig):
    """Settings of the `search` factory."""

    documents: list[Document]
    boost: dict[str, float] = Field(default_factory=dict)
    """Points added to matching documents' scores, by document id."""
    offline: bool = False
    """Whether `search` fails for good (documents can still be listed and opened)."""


def terms(text: str) -> set[str]:
    """The lower-case words and numbers of `text`, without common short words."""
    return {word for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in _STOP}


def _snippet(text: str) -> str:
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1].rstrip() + "…"


def _search(config: SearchConfig, world: World) -> list[BaseTool]:
    documents = {doc.id: doc for doc in config.documents}

    def search(query: str, limit: int = 3) -> list[dict[str, Any]]:
        """Search the company documentation; the best matches first, with a snippet each."""
        if config.offline:
            raise ToolException(
                "the search index is offline for good (decommissioned); documents can still "
                "be listed with list_documents and read with open_document"
            )
        wanted = terms(query)
        scored = []
        for index, doc in enumerate(config.documents):
            score = len(wanted & terms(f"{doc.title} {doc.text}"))
            if score:
                scored.append((-(score + config.boost.get(doc.id, 0.0)), index, doc))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [
            {"id": doc.id, "title": doc.title, "snippet": _snippet(doc.text)}
            for _, _, doc in scored[: max(1, limit)]
        ]

    def open_document(doc_id: str) -> dict[str, str]:
        """The full text of a document, by id."""
        doc = documents.get(doc_id.strip())
        if doc is None:
            raise ToolException(f"no document {doc_id!r}")
        return {"id": doc.id, "title": doc.title, "text": doc.text}

    def list_documents() -> list[dict[str, str]]:
        """Every document's id and title."""
        return [{"id": doc.id, "title": doc.title} for doc in config.documents]

    return [logged(world, search), logged(world, open_document), logged(world, list_documents)]


SEARCH = ToolFactory(SearchConfig, _search)
