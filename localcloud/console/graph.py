"""The execution graph: an ASL definition as nodes and edges (Next, Choice branches, Default,
Catch), laid out with grandalf's Sugiyama layout, each state coloured by what its execution
history says (succeeded, failed, caught, in progress, not reached)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localcloud.runner.execution_history import StateRun

START, END = "__start__", "__end__"
NODE_HEIGHT = 34
CHAR_WIDTH = 7.4  # 12 px sans-serif, roughly
NODE_PADDING = 28
MIN_NODE_WIDTH = 80
DUMMY_WIDTH = 8
X_SPACE, Y_SPACE = 24, 26
LANE_GAP = 16

# history.StateRun.status -> the console's colour classes
STATUS_CLASS = {
    "Succeeded": "succeeded",
    "Failed": "failed",
    "Caught": "caught",
    "Running": "running",
    "Aborted": "failed",
    "Timed_Out": "failed",
}


class DefinitionError(ValueError):
    """The state machine definition cannot be drawn."""


@dataclass
class GraphEdge:
    source: str
    target: str
    kind: str  # next | choice | default | catch | start | end
    label: str = ""
    taken: bool = False
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class GraphNode:
    name: str
    type: str
    comment: str = ""
    status: str = "not-reached"
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = NODE_HEIGHT


def _rule_text(rule: Mapping[str, Any]) -> str:
    """A Choice rule as short text: ``$.gate.passed == true``, ``not (...)``, ``a or b``."""
    for combinator, joiner in (("And", " and "), ("Or", " or ")):
        if combinator in rule:
            return "(" + joiner.join(_rule_text(r) for r in rule[combinator]) + ")"
    if "Not" in rule:
        return f"not {_rule_text(rule['Not'])}"
    variable = rule.get("Variable", "")
    for key, value in rule.items():
        if key in ("Variable", "Next", "Comment"):
            continue
        operator = key.removesuffix("Path")
        shown = value if key.endswith("Path") else json.dumps(value)
        for suffix, symbol in (
            ("Equals", "=="),
            ("GreaterThanEquals", ">="),
            ("LessThanEquals", "<="),
            ("GreaterThan", ">"),
            ("LessThan", "<"),
        ):
            if operator.endswith(suffix) and not operator.startswith("Is"):
                return f"{variable} {symbol} {shown}"
        return f"{variable} {key} {shown}"
    return variable or "?"


def edges_of(definition: Mapping[str, Any]) -> tuple[list[GraphNode], list[GraphEdge]]:
    """Every state (plus Start and End) and every transition of a definition's top level.

    Parallel and Map states are one node each (their branches are not drawn)."""
    states = definition.get("States")
    start = definition.get("StartAt")
    if not isinstance(states, Mapping) or not states or start not in states:
        raise DefinitionError("the definition has no States or no valid StartAt")
    nodes = [GraphNode(START, "Start")]
    edges = [GraphEdge(START, str(start), "start")]
    for name, state in states.items():
        kind = str(state.get("Type", "?"))
        nodes.append(GraphNode(name, kind, str(state.get("Comment", ""))))
        if "Next" in state:
            edges.append(GraphEdge(name, state["Next"], "next"))
        if state.get("End") or kind == "Succeed":  # a Fail state is its own end
            edges.append(GraphEdge(name, END, "end"))
        for rule in state.get("Choices", []):
            edges.append(GraphEdge(name, rule["Next"], "choice", _rule_text(rule)))
        if "Default" in state:
            edges.append(GraphEdge(name, state["Default"], "default", "default"))
        for catcher in state.get("Catch", []):
            errors = ", ".join(catcher.get("ErrorEquals", []))
            edges.append(GraphEdge(name, catcher["Next"], "catch", f"catch {errors}"))
    nodes.append(GraphNode(END, "End"))
    known = {node.name for node in nodes}
    missing = sorted({e.target for e in edges if e.target not in known})
    if missing:
        raise DefinitionError(f"transitions to states that do not exist: {', '.join(missing)}")
    return nodes, edges


def apply_history(
    nodes: Sequence[GraphNode],
    edges: Sequence[GraphEdge],
    runs: Iterable[StateRun],
    entered: Sequence[str],
    execution_status: str,
) -> None:
    """Colour the nodes by their runs and mark the transitions the execution took."""
    by_name = {run.name: run for run in runs}
    for node in nodes:
        run = by_name.get(node.name)
        if run is not None:
            node.status = STATUS_CLASS.get(run.status, "running")
    if entered:
        first = next(n for n in nodes if n.name == START)
        first.status = "succeeded"
    if execution_status == "SUCCEEDED":
        next(n for n in nodes if n.name == END).status = "succeeded"
    steps = set(zip([START, *entered], entered, strict=False))
    if execution_status == "SUCCEEDED" and entered:
        steps.add((entered[-1], END))
    for edge in edges:
        edge.taken = (edge.source, edge.target) in steps


class _Box:
    """grandalf's view of a node: its size; the layout sets ``xy``."""

    def __init__(self, width: float, height: float) -> None:
        self.w, self.h = width, height
        self.xy = (0.0, 0.0)


def layout(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> tuple[float, float]:
    """Place the nodes and route the edges (top to bottom); returns (width, height)."""
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout
    from grandalf.routing import EdgeViewer, route_with_lines

    vertices: dict[str, Any] = {}
    for node in nodes:
        label = node.name if node.name not in (START, END) else node.type
        node.width = max(MIN_NODE_WIDTH, len(label) * CHAR_WIDTH + NODE_PADDING)
        vertex = Vertex(node.name)
        vertex.view = _Box(node.width, node.height)
        vertices[node.name] = vertex
    order = {node.name: index for index, node in enumerate(nodes)}
    placed: list[tuple[GraphEdge, Any]] = []
    backwards = []
    # Catch edges take a side lane (_catch_lanes), unless a Catch is the only way into its
    # handler: then the layout places the handler under its catcher.
    reached = {e.target for e in edges if e.kind != "catch" and e.source != e.target}
    for edge in edges:
        if edge.kind == "catch" and edge.target not in reached:
            edge.kind = "catch-only"
        if edge.source == edge.target or edge.kind == "catch":
            continue  # a self-loop shows as the node's run count
        e = Edge(vertices[edge.source], vertices[edge.target])
        e.view = EdgeViewer()
        placed.append((edge, e))
        # Loops (polling, retries by hand) point up: an edge to a state written earlier
        # in the definition goes against the flow, as authors order states by the flow.
        if order[edge.target] <= order[edge.source]:
            backwards.append(e)
    graph = Graph(list(vertices.values()), [e for _, e in placed])
    shift = 0.0
    for component in graph.C:
        sugiyama = SugiyamaLayout(component)
        sugiyama.route_edge = route_with_lines
        sugiyama.dw = DUMMY_WIDTH  # long edges' bends: thin, not as wide as a state
        sugiyama.xspace, sugiyama.yspace = X_SPACE, Y_SPACE
        roots = [v for v in component.sV if v.data == START]
        inverted = [e for e in backwards if e in component.sE]
        sugiyama.init_all(roots=roots or None, inverted_edges=inverted, optimize=True)
        sugiyama.draw(3)
        # components side by side (a state nothing leads to is a component of its own)
        left = min(v.view.xy[0] - v.view.w / 2 for v in component.sV)
        for v in component.sV:
            v.view.xy = (v.view.xy[0] - left + shift, v.view.xy[1])
        for e in component.sE:
            e.view._pts = [(x - left + shift, y) for x, y in e.view._pts]
        shift = max(v.view.xy[0] + v.view.w / 2 for v in component.sV) + X_SPACE
    xs = [v.view.xy[0] - v.view.w / 2 for v in vertices.values()]
    ys = [v.view.xy[1] - v.view.h / 2 for v in vertices.values()]
    dx, dy = 20 - min(xs), 20 - min(ys)
    for node in nodes:
        x, y = vertices[node.name].view.xy
        node.x, node.y = round(x + dx, 1), round(y + dy, 1)
    for edge, e in placed:
        edge.points = [(round(x + dx, 1), round(y + dy, 1)) for x, y in e.view._pts]
    width = _catch_lanes(nodes, edges, max(n.x + n.width / 2 for n in nodes))
    height = max(n.y + n.height / 2 for n in nodes) + 20
    return round(width, 1), round(height, 1)


def _catch_lanes(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], right: float) -> float:
    """Route Catch edges through one vertical lane per handler on the right of the graph
    (so that the many catchers of one handler share a line, as in a bus); returns the width."""
    where = {node.name: node for node in nodes}
    handlers = sorted(
        {e.target for e in edges if e.kind == "catch"}, key=lambda name: where[name].y
    )
    lane = {name: right + LANE_GAP * (index + 1) for index, name in enumerate(handlers)}
    for edge in edges:
        if edge.kind == "catch-only":
            edge.kind = "catch"  # drawn like any catch, placed by the layout
            continue
        if edge.kind != "catch":
            continue
        source, target = where[edge.source], where[edge.target]
        x = lane[edge.target]
        edge.points = [
            (round(source.x + source.width / 2, 1), source.y),
            (x, source.y),
            (x, target.y),
            (round(target.x + target.width / 2, 1), target.y),
        ]
    return right + LANE_GAP * (len(handlers) + 1)


def execution_graph(
    definition: Mapping[str, Any],
    runs: Iterable[StateRun] = (),
    entered: Sequence[str] = (),
    execution_status: str = "RUNNING",
) -> dict[str, Any]:
    """The drawable graph of one execution: nodes with positions and status, routed edges."""
    nodes, edges = edges_of(definition)
    apply_history(nodes, edges, runs, entered, execution_status)
    width, height = layout(nodes, edges)
    return {
        "width": width,
        "height": height,
        "nodes": [vars(node) for node in nodes],
        "edges": [{**vars(edge), "points": [list(p) for p in edge.points]} for edge in edges],
    }
