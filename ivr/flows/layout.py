"""A small layered (Sugiyama-style) layout, top to bottom, in pure Python.

It knows nothing about flows: it places boxes of given sizes and routes the
edges between them. Every step is linear or n log n in the size of the
drawing, so a 10,000-node flow takes seconds, not hours:

1. rank: a depth-first search from the roots, taking each node's edges in
   the order given, finds the edges that close loops; they are drawn upward.
   Every other edge points down: a node sits one rank below its deepest
   predecessor, so a node that everything escapes to sinks to the bottom.
2. rows: ranks are doubled. Every edge gets a virtual node in the row next to
   its source that holds its label, and a waypoint in each row it crosses,
   so labels and long edges take room of their own instead of lying on nodes.
3. order: barycenter sweeps down and up, keeping the order with the fewest
   crossings.
4. x: passes pull every item toward the mean of its neighbours while keeping
   the row's order and spacing (isotonic regression by pool-adjacent-violators).
5. groups (subflows) sit rightmost in their rows and are pushed clear of
   everything else, so a box can be drawn around each.
6. routes run straight through each row they cross and bend only between
   rows, so an edge never cuts through a box; edge ends are spread along a
   box's top and bottom in the order of where they go.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

NODE_GAP = 28.0  # between two boxes in a row
THIN_GAP = 10.0  # next to a waypoint or a label
ROW_GAP = 14.0
PAD = 10.0  # inside a group's box
TITLE = 16.0  # a group box's title band


@dataclass
class Route:
    """Where one edge runs: points from the source's border to the target's."""

    points: list[tuple[float, float]]
    label_at: tuple[float, float] | None = None  # top-left corner of the label


@dataclass
class Placement:
    """Box centres, edge routes and the size of the drawing."""

    centers: dict[str, tuple[float, float]]
    routes: dict[int, Route] = field(default_factory=dict)  # edge index -> route
    boxes: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)  # group -> x0, y0, x1, y1
    width: float = 0.0
    height: float = 0.0


def layered(sizes: dict[str, tuple[float, float]],
            edges: list[tuple[str, str, tuple[float, float]]],
            roots: list[str],
            port_span: dict[str, float] | None = None,
            groups: dict[str, int] | None = None) -> Placement:
    """Place boxes (`sizes`: id -> (w, h)) and route `edges` (src, dst, label size).

    `groups` puts ids in numbered groups (0, the default, is the main one):
    each other group keeps to the right of the items before it in the rows it
    spans, so a box can be drawn around it (`Placement.boxes`). Edges to ids
    outside `sizes`, self-loops and edges too long for the waypoint budget
    get no route: the caller draws them directly.
    """
    ids = list(sizes)
    if not ids:
        return Placement({})
    disc, rank = _rank(ids, edges, roots)
    g = _Rows(ids, sizes, rank, disc, groups or {})
    g.add_edges(edges, rank)
    big = len(g.row) > 20000  # fewer passes on huge drawings: each pass is linear
    g.order(2 if big else 6)
    g.place(2 if big else 6)
    g.separate()
    return g.result(ids, port_span or {})


def _rank(ids, edges, roots):
    """Depth-first discovery order and ranks: one below the deepest predecessor.

    Edges back to a node still on the depth-first stack close a loop; they are
    left out of the ranking (and drawn upward), every other edge points down.
    """
    out: dict[str, list[str]] = {i: [] for i in ids}
    for s, t, _ in edges:
        if s in out and t in out and s != t:
            out[s].append(t)
    pre: dict[str, int] = {}
    post: list[str] = []
    on_stack: set[str] = set()
    back: set[tuple[str, str]] = set()
    for root in [r for r in roots if r in out] + ids:
        if root in pre:
            continue
        pre[root] = len(pre)
        on_stack.add(root)
        stack = [(root, iter(out[root]))]  # explicit stack: flows can be deeper than recursion
        while stack:
            n, todo = stack[-1]
            t = next(todo, None)
            if t is None:
                stack.pop()
                on_stack.discard(n)
                post.append(n)
            elif t in on_stack:
                back.add((n, t))
            elif t not in pre:
                pre[t] = len(pre)
                on_stack.add(t)
                stack.append((t, iter(out[t])))
    rank = dict.fromkeys(ids, 0)
    for n in reversed(post):  # a topological order of the edges that are not back edges
        for t in out[n]:
            if (n, t) not in back and rank[t] <= rank[n]:
                rank[t] = rank[n] + 1
    return pre, rank


class _Rows:
    """The doubled-rank grid of real boxes, label holders and waypoints, by integer index."""

    def __init__(self, ids, sizes, rank, disc, groups):
        self.group = [groups.get(i, 0) for i in ids]
        self.w = [sizes[i][0] for i in ids]
        self.h = [sizes[i][1] for i in ids]
        self.row = [2 * rank[i] for i in ids]
        self.key = [float(disc[i]) for i in ids]  # initial order within a row
        self.real = len(ids)
        self.up: list[list[tuple[int, float]]] = [[] for _ in ids]
        self.down: list[list[tuple[int, float]]] = [[] for _ in ids]
        self.chains: dict[int, list[int]] = {}  # edge index -> items from source to target
        self.labels: dict[int, int] = {}  # edge index -> the item holding its label
        self.index = {n: k for k, n in enumerate(ids)}

    def _item(self, row: int, w: float, h: float, key: float, group: int) -> int:
        self.group.append(group)
        self.w.append(w)
        self.h.append(h)
        self.row.append(row)
        self.key.append(key)
        self.up.append([])
        self.down.append([])
        return len(self.w) - 1

    def _link(self, a: int, b: int) -> None:
        # Waypoint-to-waypoint links pull hardest, so long edges run straight.
        weight = 1.0 + (a >= self.real) + (b >= self.real) + 6.0 * (a >= self.real and b >= self.real)
        if self.row[a] > self.row[b]:
            a, b = b, a
        self.down[a].append((b, weight))
        self.up[b].append((a, weight))

    def add_edges(self, edges, rank) -> None:
        spans = []
        for k, (s, t, _) in enumerate(edges):
            if s != t and s in self.index and t in self.index:
                spans.append((abs(rank[s] - rank[t]), k))
        # Short edges get waypoints first; long ones share a budget linear in
        # the number of nodes so a deep flow cannot explode quadratically.
        budget = 3 * self.real + 200
        for _, k in sorted(spans):
            s, t, (lw, lh) = edges[k]
            a, b = self.index[s], self.index[t]
            ra, rb = self.row[a], self.row[b]
            # Ranks differ for every edge but a loop on one node (see _rank); upward edges close loops.
            rows = list(range(ra + 1, rb)) if rb > ra else list(range(ra - 1, rb, -1))
            if len(rows) - 1 > budget:
                continue
            budget -= len(rows) - 1
            chain = [a]
            group = self.group[a] if self.group[a] == self.group[b] else 0
            for j, r in enumerate(rows):
                w, h = (lw + 8, lh) if j == 0 and lw > 0 else (2.0, 0.0)
                chain.append(self._item(r, w, h, self.key[a] + 0.5, group))
            chain.append(b)
            for x, y in zip(chain, chain[1:], strict=False):
                self._link(x, y)
            self.chains[k] = chain
            if lw > 0:
                self.labels[k] = chain[1]

    # ---- order ---------------------------------------------------------------

    def order(self, sweeps: int) -> None:
        nrows = max(self.row) + 1
        self.rows: list[list[int]] = [[] for _ in range(nrows)]
        for i in sorted(range(len(self.row)), key=lambda i: (self.group[i], self.key[i])):
            self.rows[self.row[i]].append(i)
        self.pos = [0] * len(self.row)
        self._number()
        best, best_x = [list(r) for r in self.rows], self._crossings()
        for _ in range(sweeps):
            for r in range(1, nrows):
                self._sort(r, self.up)
            for r in range(nrows - 2, -1, -1):
                self._sort(r, self.down)
            x = self._crossings()
            if x < best_x:
                best, best_x = [list(r) for r in self.rows], x
            if best_x == 0:
                break
        self.rows = best
        self._number()

    def _number(self) -> None:
        for row in self.rows:
            for k, i in enumerate(row):
                self.pos[i] = k

    def _sort(self, r: int, nbrs) -> None:
        pos, group = self.pos, self.group

        def bary(i: int) -> tuple[int, float]:  # groups stay in their order, left to right
            ns = nbrs[i]
            return group[i], sum(pos[j] for j, _ in ns) / len(ns) if ns else float(pos[i])

        row = sorted(self.rows[r], key=bary)
        self.rows[r] = row
        for k, i in enumerate(row):
            pos[i] = k

    def _crossings(self) -> int:
        """Crossings between adjacent rows: inversions counted with a Fenwick tree."""
        total = 0
        for row in self.rows[:-1]:
            pairs = sorted((self.pos[a], self.pos[b]) for a in row for b, _ in self.down[a])
            size = max((p[1] for p in pairs), default=0) + 2
            tree = [0] * (size + 1)
            for n, (_, b) in enumerate(pairs):
                j, le = b + 1, 0
                while j > 0:  # how many earlier edges end at or left of b
                    le += tree[j]
                    j -= j & -j
                total += n - le
                j = b + 1
                while j <= size:
                    tree[j] += 1
                    j += j & -j
        return total

    # ---- x and y -------------------------------------------------------------

    def _gap(self, a: int, b: int) -> float:
        return NODE_GAP if a < self.real and b < self.real else THIN_GAP

    def place(self, passes: int) -> None:
        self.x = [0.0] * len(self.row)
        for row in self.rows:
            cur = 0.0
            for k, i in enumerate(row):
                if k:
                    cur += self._gap(row[k - 1], i)
                self.x[i] = cur + self.w[i] / 2
                cur += self.w[i]
            for i in row:  # centre every row on one axis to start with
                self.x[i] -= cur / 2
        both = [u + d for u, d in zip(self.up, self.down, strict=True)]
        for _ in range(passes):
            for row in self.rows[1:]:
                self._pull(row, self.up)
            for row in reversed(self.rows[:-1]):
                self._pull(row, self.down)
        for _ in range(2):
            for row in self.rows:
                self._pull(row, both)

    def _pull(self, row: list[int], nbrs) -> None:
        """Move a row's items toward their neighbours' mean x, keeping order and gaps."""
        x = self.x
        blocks: list[list[float]] = []  # [weight, weighted sum, count]
        offsets = []
        off = 0.0
        for k, i in enumerate(row):
            if k:
                off += self.w[row[k - 1]] / 2 + self._gap(row[k - 1], i) + self.w[i] / 2
            offsets.append(off)
            weight, total = 0.0, 0.0
            for j, w in nbrs[i]:
                weight += w
                total += x[j] * w
            if not weight:  # an item with no neighbour there stays put, but gives way
                weight, total = 0.5, 0.5 * x[i]
            blocks.append([weight, total - weight * off, 1])
            while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
                w2, s2, c2 = blocks.pop()
                blocks[-1][0] += w2
                blocks[-1][1] += s2
                blocks[-1][2] += c2
        k = 0
        for weight, total, count in blocks:
            base = total / weight
            for _ in range(count):
                x[row[k]] = base + offsets[k]
                k += 1

    def separate(self) -> None:
        """Push each group's box right of the main items and earlier boxes in the rows it spans.

        Rows are sorted by group, so the last main item in a row is found by
        bisection; moving a group moves every later group too (by a running
        total), which keeps every row in order.
        """
        self.members: dict[int, list[int]] = {}
        for i, g in enumerate(self.group):
            if g:
                self.members.setdefault(g, []).append(i)
        box_right: list[float | None] = [None] * len(self.rows)  # right edge of boxes so far, per row
        total = 0.0
        for g in sorted(self.members):
            members = self.members[g]
            for i in members:
                self.x[i] += total
            spans = range(max(min(self.row[i] for i in members) - 1, 0),
                          min(max(self.row[i] for i in members) + 2, len(self.rows)))
            edges = [r for r in (box_right[r] for r in spans) if r is not None]
            for r in spans:
                k = bisect_left(self.rows[r], 1, key=self.group.__getitem__)
                if k:
                    i = self.rows[r][k - 1]
                    edges.append(self.x[i] + self.w[i] / 2)
            left = min(self.x[i] - self.w[i] / 2 for i in members)
            shift = max(edges) + NODE_GAP + PAD - left if edges else 0.0
            if shift > 0:
                total += shift
                for i in members:
                    self.x[i] += shift
            right = max(self.x[i] + self.w[i] / 2 for i in members) + PAD
            for r in spans:
                box_right[r] = max(box_right[r] or right, right)

    def result(self, ids: list[str], port_span: dict[str, float]) -> Placement:
        heights = [max((self.h[i] for i in row), default=0.0) for row in self.rows]
        y_row, cur = [], 0.0
        for hgt in heights:
            y_row.append(cur + hgt / 2)
            cur += hgt + ROW_GAP
        x, y = self.x, [y_row[r] for r in self.row]
        boxes = {}
        for g, m in self.members.items():
            boxes[g] = (min(x[i] - self.w[i] / 2 for i in m) - PAD, min(y[i] - self.h[i] / 2 for i in m) - PAD - TITLE,
                        max(x[i] + self.w[i] / 2 for i in m) + PAD, max(y[i] + self.h[i] / 2 for i in m) + PAD)
        # Move everything so the drawing, group boxes included, starts at (0, 0).
        left = min([x[i] - self.w[i] / 2 for i in range(len(x))] + [b[0] for b in boxes.values()])
        top = min([0.0] + [b[1] for b in boxes.values()])
        x, y = [v - left for v in x], [v - top for v in y]
        place = Placement({n: (x[k], y[k]) for k, n in enumerate(ids)})
        place.boxes = {g: (b[0] - left, b[1] - top, b[2] - left, b[3] - top) for g, b in boxes.items()}
        place.width = max([x[i] + self.w[i] / 2 for i in range(len(x))] + [b[2] for b in place.boxes.values()])
        place.height = max([cur - ROW_GAP - top] + [b[3] for b in place.boxes.values()])
        ports = self._ports(x, y, ids, port_span)
        for k, chain in self.chains.items():
            pts = [ports[(k, 0)]]
            for i in chain[1:-1]:
                # The edge runs down the left side of its label, so the text never covers it,
                # and straight through a row, so it bends only between rows, never into a box.
                px = x[i] - self.w[i] / 2 + 3 if self.labels.get(k) == i else x[i]
                half = heights[self.row[i]] / 2 * (1 if pts[-1][1] < y[i] else -1)
                pts += [(px, y[i] - half), (px, y[i] + half)] if half else [(px, y[i])]
            pts.append(ports[(k, 1)])
            lab = self.labels.get(k)
            at = (x[lab] - self.w[lab] / 2 + 8, y[lab] - self.h[lab] / 2) if lab is not None else None
            place.routes[k] = Route(pts, at)
        return place

    def _ports(self, x, y, ids, port_span):
        """Spread the ends of edges along a box's top and bottom, in the order of where they go."""
        sides: dict[tuple[int, int], list[tuple[float, int, int]]] = {}
        for k, chain in self.chains.items():
            for end, (i, nxt) in enumerate(((chain[0], chain[1]), (chain[-1], chain[-2]))):
                side = 1 if self.row[nxt] > self.row[i] else -1
                sides.setdefault((i, side), []).append((x[nxt], k, end))
        out = {}
        for (i, side), ends in sides.items():
            ends.sort()
            span = port_span.get(ids[i], self.w[i] * 0.35)
            step = min(14.0, 2 * span / (len(ends) - 1)) if len(ends) > 1 else 0.0
            for n, (_, k, end) in enumerate(ends):
                dx = (n - (len(ends) - 1) / 2) * step
                out[(k, end)] = (x[i] + dx, y[i] + side * self.h[i] / 2)
        return out
