"""planexec's benchmark: the real graph against a latency-simulating local model server.

Run it from the repository root with `make bench` (`.venv/bin/python -m bench`). It
prints Markdown tables and writes them to `bench/results.md`, with the same figures in
`bench/results.json`. See `python -m bench --help`.
"""
