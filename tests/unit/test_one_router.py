"""No code path picks a backend except the Router (issue 15; the seed 003 bug was a chat path that
hard-wired RunPod): read from the source, every function outside app/providers/ that sends an
upstream call (a provider's `exchange` or `prepare`) or takes a provider out of the pipeline's
table has asked the router in that same function, and only routing.py turns a name into a backend."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

APP = REPO / "app"
SENDS = frozenset({"exchange", "prepare"})
# Where a backend is looked up by name for what is not a routing decision: the config building
# it, the router itself, the admin API checking a name before storing it, the status listing.
NAME_LOOKUPS_ALLOWED = {"config.py", "env_config.py", "routing.py", "default_provider.py", "check_config.py"}


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _calls(fn: ast.AST, names: frozenset[str]) -> list[ast.Call]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in names]


def _sources() -> list[Path]:
    return [p for p in APP.rglob("*.py") if "providers" not in p.relative_to(APP).parts]


def offenders(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for fn in _functions(tree):
        sends = _calls(fn, SENDS)
        takes = [n for n in ast.walk(fn) if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Attribute)
                 and n.value.attr == "providers"]
        if (sends or takes) and not (_calls(fn, DECIDES) or _takes_a_plan(fn)):
            found.append(f"{path.name}:{fn.lineno} {fn.name}")
    return found


# Asking the router: directly (route, or route_transparent for a transparent path), or through Pipeline.plan (which asks it: the request path's and
# the inspector's one planning step); a function handed a Plan works on a decision already made.
DECIDES = frozenset({"route", "route_transparent", "plan"})


def _takes_a_plan(fn: ast.AST) -> bool:
    return any(isinstance(a.annotation, ast.Name) and a.annotation.id == "Plan"
               for a in fn.args.args + fn.args.kwonlyargs)


def test_a_plan_is_made_only_by_pipeline_plan_which_asks_the_router():
    made = [f"{p.relative_to(REPO)}:{fn.name}" for p in _sources() for fn in _functions(ast.parse(p.read_text()))
            if any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Plan"
                   for n in ast.walk(fn))]
    assert made == ["app/pipeline.py:plan"]
    (plan,) = [fn for fn in _functions(ast.parse((APP / "pipeline.py").read_text())) if fn.name == "plan"]
    assert _calls(plan, frozenset({"route"}))


def test_every_upstream_call_is_preceded_by_a_routing_decision_in_its_function():
    assert [f"{p.parent.name}/{o}" for p in _sources() for o in offenders(p)] == []


def test_the_check_finds_a_hard_wired_backend(tmp_path):
    """The seed's bug, written here: it is found."""
    bad = tmp_path / "model_manager.py"
    bad.write_text("def generate_response(pipeline, call):\n"
                   "    provider = pipeline.providers['runpod']\n"
                   "    return provider.exchange(call, pipeline.client)\n")
    good = tmp_path / "routed.py"
    good.write_text("def generate_response(pipeline, req, call):\n"
                    "    route = pipeline.router.route(req.model, req.capabilities())\n"
                    "    return pipeline.providers[route.backend.name].exchange(call, pipeline.client)\n")
    assert offenders(bad) == ["model_manager.py:1 generate_response"]
    assert offenders(good) == []


def test_only_the_router_turns_a_name_into_a_backend():
    """`config.backends[name]` / `.backends.get(name)` outside the modules that build or route."""
    found = []
    for path in _sources():
        if path.name in NAME_LOOKUPS_ALLOWED:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            looked_up = (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                         and node.value.attr == "backends") or \
                        (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                         and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "backends")
            if looked_up:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []
