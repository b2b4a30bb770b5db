"""Trees drawn on the job page: a Newick output (a guide tree) laid out as a rectangular
tree for an SVG that the page's template writes (every label escaped there).

The parser is iterative (no recursion limit to reach with a deep tree) and bounded: at
most ``MAX_BYTES`` of text and ``MAX_LEAVES`` leaves, else the text preview only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_BYTES = 512 * 1024
MAX_LEAVES = 2000
ROW = 18  # pixels per leaf
WIDTH = 480  # pixels from the root to the farthest leaf
LABEL_ROOM = 220  # pixels right of the farthest leaf for its label


class NotATree(ValueError):
    """The text is not a Newick tree this module draws (a reason, for the page's note)."""


@dataclass
class Node:
    name: str = ""
    length: float = 0.0
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class TreeView:
    lines: tuple[Line, ...]
    labels: tuple[Label, ...]
    width: int
    height: int
    leaves: int


def parse_newick(text: str) -> Node:
    """The tree of a Newick text (``(A:0.1,(B:0.2,C:0.3):0.05);``); comments in square
    brackets are skipped, quoted names kept."""
    text = text.strip()
    if not text.endswith(";"):
        raise NotATree("a Newick tree ends with ';'")
    root = Node()
    stack: list[Node] = []
    current = root
    i, size = 0, len(text) - 1
    while i < size:
        char = text[i]
        if char == "(":
            child = Node()
            current.children.append(child)
            stack.append(current)
            current = child
            i += 1
        elif char == ",":
            if not stack:
                raise NotATree("a ',' outside any parentheses")
            sibling = Node()
            stack[-1].children.append(sibling)
            current = sibling
            i += 1
        elif char == ")":
            if not stack:
                raise NotATree("a ')' without its '('")
            current = stack.pop()
            i += 1
        elif char == ":":
            i, value = _token(text, i + 1, size)
            try:
                current.length = max(float(value), 0.0)
            except ValueError:
                raise NotATree(f"a branch length that is no number: {value[:20]!r}") from None
        elif char == "[":
            end = text.find("]", i)
            if end < 0:
                raise NotATree("a comment '[' without its ']'")
            i = end + 1
        elif char.isspace():
            i += 1
        elif char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise NotATree("a quoted name without its closing quote")
            current.name = text[i + 1 : end]
            i = end + 1
        else:
            i, current.name = _token(text, i, size)
    if stack:
        raise NotATree("a '(' without its ')'")
    return root


def _token(text: str, i: int, end: int) -> tuple[int, str]:
    start = i
    while i < end and text[i] not in "(),:;[":
        i += 1
    return i, text[start:i].strip()


def layout(root: Node) -> TreeView:
    """Leaves top to bottom in the file's order, x by distance from the root (every
    branch counts 1 when the tree gives no lengths)."""
    scaled = _any_length(root)
    depth: dict[int, float] = {id(root): 0.0}
    order: list[Node] = []
    stack = [root]
    while stack:  # pre-order: depths, and the leaves in the file's order
        node = stack.pop()
        for child in node.children:
            depth[id(child)] = depth[id(node)] + (child.length if scaled else 1.0)
        if not node.children:
            order.append(node)
        stack.extend(reversed(node.children))
    if len(order) > MAX_LEAVES:
        raise NotATree(f"too large to draw here ({len(order)} leaves)")
    farthest = max(depth.values()) or 1.0
    x = {key: 10 + WIDTH * value / farthest for key, value in depth.items()}
    y: dict[int, float] = {id(leaf): ROW * (n + 1) for n, leaf in enumerate(order)}
    lines: list[Line] = []
    for node in _post_order(root):
        if node.children:
            ys = [y[id(c)] for c in node.children]
            y[id(node)] = (min(ys) + max(ys)) / 2
            lines.append(Line(x[id(node)], min(ys), x[id(node)], max(ys)))  # the vertical
            for child in node.children:  # each child's horizontal branch
                lines.append(Line(x[id(node)], y[id(child)], x[id(child)], y[id(child)]))
    labels = tuple(Label(x[id(leaf)] + 6, y[id(leaf)] + 4, leaf.name) for leaf in order)
    return TreeView(lines=tuple(lines), labels=labels, width=int(10 + WIDTH + LABEL_ROOM),
                    height=int(ROW * (len(order) + 1)), leaves=len(order))  # fmt: skip


def _any_length(root: Node) -> bool:
    return any(node.length > 0 for node in _post_order(root))


def _post_order(root: Node) -> list[Node]:
    out: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    return out[::-1]


def read_tree(text: str) -> TreeView:
    if len(text) > MAX_BYTES:
        raise NotATree("too large to draw here")
    return layout(parse_newick(text))
