"""`planexec audit THREAD`: the thread's audit trail as JSON Lines."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from planexec.audit import AuditRecord, audit_trail
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

    async def read() -> tuple[str, list[AuditRecord]]:
        async with open_saver(location, env.checkpoint_key, read_only=True) as saver:
            thread = await resolve_thread(saver, args.thread, redact(location))
            graph = build_graph(checkpointer=saver)
            return thread, await audit_trail(graph, thread, current_only=args.current_only)

    thread, records = asyncio.run(read())
    if not records:
        raise UserError(f"unknown thread {thread} in {redact(location)}")
    lines = "".join(
        json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records
    )
    if args.output and args.output != "-":
        target = Path(args.output).expanduser()
        try:
            target.write_text(lines, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror}") from exc
        out.console.print(f"wrote {len(records)} records to {inert(target)}")
    else:
        sys.stdout.write(lines)
    return 0
