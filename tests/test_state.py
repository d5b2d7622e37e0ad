"""No module-level mutable state in ``src/sakd``: a run (or a command) owns its state, as objects
or context variables, so nothing one run did leaks into the next and no test patches a private
module name to reset it. Read from the source: a module (or class) that binds a list, dict or set
(or a counter) at its top level and changes it later, or rebinds a name with ``global``, fails."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sakd"
CHANGES = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "clear", "remove",
           "discard", "appendleft", "__setitem__", "__delitem__"}
CONTAINERS = {"list", "dict", "set", "defaultdict", "OrderedDict", "deque", "Counter", "WeakSet",
              "WeakKeyDictionary", "WeakValueDictionary", "count"}


def is_container(value: ast.expr) -> bool:
    if isinstance(value, (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)):
        return True
    func = value.func if isinstance(value, ast.Call) else None
    return func is not None and (getattr(func, "id", None) or getattr(func, "attr", None)) in CONTAINERS


def top_level_containers(body: list[ast.stmt]) -> set[str]:
    names = set()
    for node in body:
        if isinstance(node, ast.Assign) and is_container(node.value):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and node.value is not None and is_container(node.value):
            if isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def changed(tree: ast.Module, owner: str, names: set[str], attribute: bool) -> list[str]:
    """Where ``names`` (module names, or class attributes read as ``X.name``/``self.name``) change."""

    def named(node) -> str | None:
        if attribute:
            return node.attr if isinstance(node, ast.Attribute) and node.attr in names else None
        return node.id if isinstance(node, ast.Name) and node.id in names else None

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CHANGES:
            name = named(node.func.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "next" and node.args:
            name = named(node.args[0])  # a counter drawn from
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            name = next((named(t.value) for t in targets if isinstance(t, ast.Subscript) and named(t.value)), None)
        else:
            continue
        if name:
            found.append(f"{owner}: {name} (line {node.lineno})")
    return found


def mutable_state(source: str, where: str) -> list[str]:
    tree = ast.parse(source, where)
    found = [
        f"{where}: global {', '.join(n.names)} (line {n.lineno})" for n in ast.walk(tree) if isinstance(n, ast.Global)
    ]
    found += changed(tree, where, top_level_containers(tree.body), attribute=False)
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        found += changed(tree, f"{where} class {cls.name}", top_level_containers(cls.body), attribute=True)
    return found


def test_no_module_of_sakd_keeps_mutable_state_at_module_level():
    found = [
        f
        for path in sorted(SRC.rglob("*.py"))
        for f in mutable_state(path.read_text(), str(path.relative_to(SRC.parent)))
    ]
    assert not found, "module-level mutable state (make it a run's object or a contextvars.ContextVar):\n" + "\n".join(
        found
    )


def test_the_check_finds_each_kind_of_module_state():
    """The check above is not vacuous: each form of hidden state it looks for is found."""
    cases = {
        "a.py": "_seen = []\ndef f(x):\n    _seen.append(x)\n",
        "b.py": "TABLE: dict = {}\ndef f(k):\n    TABLE[k] = 1\n",
        "c.py": "_step = None\ndef f(s):\n    global _step\n    _step = s\n",
        "d.py": "class R:\n    all = []\n    def __init__(self):\n        R.all.append(self)\n",
        "e.py": "import itertools\n_ids = itertools.count()\ndef f():\n    return next(_ids)\n",
        "f.py": "import weakref\n_off = weakref.WeakSet()\ndef f(m):\n    _off.add(m)\n",
    }
    for name, source in cases.items():
        assert len(mutable_state(source, name)) == 1, (name, source)
    constants = "CHOICES = {'a': 1}\nNAMES = ['x']\ndef f(k):\n    return CHOICES[k], list(NAMES)\n"
    assert mutable_state(constants, "g.py") == []
