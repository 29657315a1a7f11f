"""The shop MCP server of `planexec.demo.shop`, for `examples/mcp.json`.

A small deterministic shop over stdio: `lookup_price`, `add_to_cart` (which the config
marks for approval) and `cart_total`. Its code is `src/planexec/demo/shop.py`, shipped
with planexec so that notebooks and scripts outside this repository can start it with
`python -m planexec.demo.shop`.
"""

from planexec.demo.shop import server

if __name__ == "__main__":
    server.run("stdio")
