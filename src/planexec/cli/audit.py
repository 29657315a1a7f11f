"""`planexec audit THREAD`: the thread's audit trail as JSON Lines, written as it is read."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from planexec.audit import AuditRecord, audit_records
from planexec.checkpoints import redact
from planexec.cli.environment import Environment, UserError, checkpoint_location
from planexec.cli.opening import open_saver, prepare_checkpoint
from planexec.cli.threads import resolve_thread
from planexec.graph import build_graph
from planexec.inert import inert

if TYPE_CHECKING:
    from planexec.cli.environment import Output


def audit(args: argparse.Namespace, env: Environment, out: Output) -> int:
    """`planexec audit THREAD`."""
    location = checkpoint_location(args.checkpoint, env)
    if isinstance(location, Path) and not location.exists():
        raise UserError(f"unknown thread {args.thread}: no checkpoint file at {location} yet")
    location = prepare_checkpoint(location, create=False)

    target = Path(args.output).expanduser() if args.output and args.output != "-" else None

    async def write() -> int:
        async with open_saver(location, env.checkpoint_key, read_only=True) as saver:
            thread = await resolve_thread(saver, args.thread, redact(location))
            graph = build_graph(checkpointer=saver)
            records = audit_records(graph, thread, current_only=args.current_only)
            first = await anext(records, None)
            if first is None:
                raise UserError(f"unknown thread {thread} in {redact(location)}")
            if target is None:
                return await _write(sys.stdout, first, records)
            try:
                stream = await asyncio.to_thread(target.open, "w", encoding="utf-8")
                with stream:
                    count = await _write(stream, first, records)
            except OSError as exc:
                raise UserError(f"cannot write {target}: {exc.strerror}") from exc
            out.console.print(f"wrote {count} records to {inert(target)}")
            return count

    asyncio.run(write())
    return 0


async def _write(stream: TextIO, first: AuditRecord, rest: AsyncIterator[AuditRecord]) -> int:
    """Write `first` and then `rest` as JSON Lines, each as it comes; how many."""
    stream.write(_line(first))
    count = 1
    async for record in rest:
        stream.write(_line(record))
        count += 1
    return count


def _line(record: AuditRecord) -> str:
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"
