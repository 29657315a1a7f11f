"""A small MCP server for trying planexec's MCP tools: a shop with prices and a cart.

It speaks MCP over stdio and is deterministic: the same calls give the same answers.
It comes with planexec (it needs the `mcp` extra), so it runs from anywhere as
`python -m planexec.demo.shop`; `examples/mcp_server.py` runs it too. Through planexec,
with the config in `examples/mcp.json`:

    planexec run --mcp-config examples/mcp.json "Put 3 apples and 2 pears in the cart"

`add_to_cart` changes something, so `examples/mcp.json` marks it as needing a
person's approval before each call; `lookup_price` and `cart_total` only read.
The cart lives as long as the server process, which planexec keeps for one run.
"""

from __future__ import annotations

from mcp.server.fastmcp import FastMCP

PRICES = {"apple": 0.5, "pear": 0.75, "bread": 2.25, "milk": 1.1, "coffee": 7.9}
"""Price of one unit of each item, in euros."""

server = FastMCP("shop", log_level="WARNING")
cart: dict[str, int] = {}


@server.tool()
def lookup_price(item: str) -> float:
    """The price in euros of one unit of an item (apple, pear, bread, milk, coffee)."""
    key = item.strip().lower().removesuffix("s")
    if key not in PRICES:
        raise ValueError(f"no such item: {item!r}; the shop sells {', '.join(sorted(PRICES))}")
    return PRICES[key]


@server.tool()
def add_to_cart(item: str, qty: int) -> str:
    """Put `qty` units of an item in the cart; says what the cart now holds."""
    key = item.strip().lower().removesuffix("s")
    if key not in PRICES:
        raise ValueError(f"no such item: {item!r}")
    if qty < 1:
        raise ValueError("qty must be at least 1")
    cart[key] = cart.get(key, 0) + qty
    return ", ".join(f"{count} {name}" for name, count in sorted(cart.items()))


@server.tool()
def cart_total() -> float:
    """The total price in euros of what is in the cart."""
    return round(sum(PRICES[name] * count for name, count in cart.items()), 2)


if __name__ == "__main__":
    server.run("stdio")
