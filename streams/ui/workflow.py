"""A task's workflow (chain / group / chord) as a drawn tree, from ``root_id`` and ``parent_id``.

Celery stamps every task of a canvas with the workflow's ``root_id`` and the ``parent_id`` of the
task that published it (a chain's next step, a group's members, a chord's callback). The tree
drawn is parent -> child; a task whose parent is not among the rows hangs off the root. Pure:
returns node positions for the SVG the template draws; rows are untrusted (a parent loop in
hostile data ends the walk instead of recursing forever).
"""

from __future__ import annotations

from dataclasses import dataclass

COLUMN = 250  # px between tree levels
ROW = 46  # px between leaves
NODE_W, NODE_H = 220, 34


@dataclass
class Node:
    row: dict
    depth: int
    slot: float  # vertical position in leaf units
    current: bool

    @property
    def x(self) -> int:
        return 10 + self.depth * COLUMN

    @property
    def y(self) -> int:
        return 10 + int(self.slot * ROW)


@dataclass
class Graph:
    nodes: list[Node]
    edges: list[tuple[Node, Node]]
    width: int
    height: int


def layout(rows: list[dict], current: str) -> Graph:
    """Rows (uuid, parent_id, root_id, first_seen_at, ...) -> a left-to-right tree layout."""
    by_uuid = {r["uuid"]: r for r in rows}
    roots_hint = {r.get("root_id") for r in rows if r.get("root_id") in by_uuid}
    children: dict[str | None, list[dict]] = {}
    for r in rows:
        parent = r.get("parent_id")
        if parent not in by_uuid or parent == r["uuid"]:
            root = r.get("root_id")
            parent = root if root in by_uuid and root != r["uuid"] else None
        children.setdefault(parent, []).append(r)
    for kids in children.values():
        kids.sort(key=lambda r: (r.get("first_seen_at") or 0, r["uuid"]))

    nodes: list[Node] = []
    edges: list[tuple[Node, Node]] = []
    placed: dict[str, Node] = {}
    kids_of: dict[int, list[Node]] = {}
    next_leaf = 0.0

    def place(top: dict) -> None:
        # Iterative depth-first walk (a chain of thousands of steps must not hit the recursion limit).
        nonlocal next_leaf
        stack: list[tuple[dict, int, Node | None, bool]] = [(top, 0, None, False)]
        while stack:
            row, depth, parent, done = stack.pop()
            if done:
                node = placed[row["uuid"]]
                kids = kids_of.get(id(node), [])
                if kids:
                    node.slot = (kids[0].slot + kids[-1].slot) / 2
                else:
                    node.slot = next_leaf
                    next_leaf += 1
                continue
            if row["uuid"] in placed:
                continue
            node = Node(row, depth, 0.0, row["uuid"] == current)
            placed[row["uuid"]] = node
            nodes.append(node)
            if parent is not None:
                kids_of.setdefault(id(parent), []).append(node)
                edges.append((parent, node))
            stack.append((row, depth, parent, True))
            for kid in reversed(children.get(row["uuid"], [])):
                if kid["uuid"] not in placed:
                    stack.append((kid, depth + 1, node, False))

    tops = sorted(children.get(None, []), key=lambda r: (r["uuid"] not in roots_hint, r.get("first_seen_at") or 0, r["uuid"]))
    for row in tops:
        if row["uuid"] not in placed:
            place(row)
    for row in rows:  # anything left is in a parent loop: draw it unattached
        if row["uuid"] not in placed:
            place(row)
    depth = max((n.depth for n in nodes), default=0)
    return Graph(nodes, edges, 20 + depth * COLUMN + NODE_W, 20 + int(max(next_leaf, 1) * ROW))
