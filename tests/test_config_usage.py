"""No configuration key is parsed and ignored: every field of every configuration section is read
somewhere in the package outside ``config.py`` and ``configparse.py``.

The package is scanned with ``ast``. A read of field ``F`` counts for section ``S`` (say
``admin.enabled``) only when what it is read from is known to be that section: an attribute
chain ending in the section's name (``config.admin.enabled``), or a name bound to the section in
the same module: assigned from such a chain (``ac = config.admin``; ``self.config = config``
where ``config: AdminConfig``), annotated with the section's class, or the loop variable over a
list of sections (``for p in tc.profiles``). A method of the section class (``base_url()``)
that is called outside counts as reading the fields it uses. So ``gateway.enabled`` being read
does not make ``admin.enabled`` read. A component's switch counts too: ``tap.specs_for`` reads
``enabled`` (``getattr(section, "enabled", True)``) of the section named by each
``Spec(name, module, section, modes)`` of ``tap.COMPONENTS`` that is not ``switch=False``.

:data:`NOT_YET` lists the keys another open issue implements; each must still be unread (a stale
entry fails too), so the list shrinks as they land.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tgateway import config as C

PACKAGE = Path(C.__file__).parent
SKIP = {"config.py", "configparse.py", "configchecks.py"}  # checking a key is not using it

#: key -> why it is not read yet
NOT_YET: dict[str, str] = {}


def sections() -> dict[type, list[tuple[str, str | None]]]:
    """Every section class reachable from Config: its dotted paths and the attribute name that
    leads to it from its parent (None for Config itself)."""
    out: dict[type, list[tuple[str, str | None]]] = {C.Config: [("", None)]}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls, vars(C))
        for f in dataclasses.fields(cls):
            t = hints[f.name]
            args = typing.get_args(t)
            inner = args[0] if args and dataclasses.is_dataclass(args[0]) else t
            if dataclasses.is_dataclass(inner):
                out.setdefault(inner, []).append((prefix + f.name, f.name))  # type: ignore[arg-type]
                walk(inner, prefix + f.name + ".")  # type: ignore[arg-type]

    walk(C.Config, "")
    return out


SECTIONS = sections()
LINKS: dict[str, set[type]] = {}
for _cls, _places in SECTIONS.items():
    for _, _link in _places:
        if _link:
            LINKS.setdefault(_link, set()).add(_cls)
NAMES = {cls.__name__: cls for cls in SECTIONS}


def _key(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


def _annotated(annotation: ast.AST | None) -> set[type]:
    out: set[type] = set()
    for n in ast.walk(annotation) if annotation is not None else ():
        if isinstance(n, ast.Name) and n.id in NAMES:
            out.add(NAMES[n.id])
        elif isinstance(n, ast.Attribute) and n.attr in NAMES:
            out.add(NAMES[n.attr])
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.update(cls for name, cls in NAMES.items() if name in n.value)
    return out


def _sections_of(expr: ast.AST, bound: dict[str, set[type]]) -> set[type]:
    if isinstance(expr, ast.Attribute) and expr.attr in LINKS:
        return set(LINKS[expr.attr])
    key = _key(expr)
    return set(bound.get(key, ())) if key else set()


def _switches(tree: ast.AST) -> set[tuple[type, str]]:
    """``enabled`` of the sections a module's ``Spec(...)`` calls name, when the same module
    reads ``enabled`` by name (``getattr(..., "enabled", ...)``) and the Spec is a switch."""
    reads_enabled = any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "getattr"
        and len(n.args) >= 2 and isinstance(n.args[1], ast.Constant)
        and n.args[1].value == "enabled" for n in ast.walk(tree))
    if not reads_enabled:
        return set()
    out: set[tuple[type, str]] = set()
    for n in ast.walk(tree):
        if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Spec"
                and len(n.args) >= 3 and isinstance(n.args[2], ast.Constant)):
            continue
        if any(k.arg == "switch" and isinstance(k.value, ast.Constant) and k.value.value is False
               for k in n.keywords):
            continue
        out.update((cls, "enabled") for cls in LINKS.get(str(n.args[2].value), ()))
    return out


def _sections_built(tree: ast.AST) -> set[tuple[type, str]]:
    """``Config.<section>`` for every ``Spec(...)`` of tap.COMPONENTS: tap hands that section to
    the component's ``build`` (``getattr(config, spec.section)``)."""
    return {(C.Config, str(n.args[2].value)) for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "Spec"
            and len(n.args) >= 3 and isinstance(n.args[2], ast.Constant)}


def reads() -> set[tuple[type, str]]:
    """(section class, field or method name) read anywhere outside the config modules."""
    found: set[tuple[type, str]] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in SKIP and path.parent == PACKAGE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found |= _switches(tree) | _sections_built(tree)
        bound: dict[str, set[type]] = {}
        for _ in range(3):  # bindings through bindings (a = config.x; self.b = a)
            for n in ast.walk(tree):
                if isinstance(n, ast.arg):
                    bound.setdefault(n.arg, set()).update(_annotated(n.annotation))
                elif isinstance(n, ast.AnnAssign) and (key := _key(n.target)):
                    got = _annotated(n.annotation)
                    if n.value is not None:
                        got |= _sections_of(n.value, bound)
                    bound.setdefault(key, set()).update(got)
                elif isinstance(n, ast.Assign):
                    got = _sections_of(n.value, bound)
                    for target in n.targets:
                        if (key := _key(target)) and got:
                            bound.setdefault(key, set()).update(got)
                elif isinstance(n, (ast.For, ast.comprehension)):
                    got = _sections_of(n.iter, bound)
                    if (key := _key(n.target)) and got:
                        bound.setdefault(key, set()).update(got)
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute):
                found.update((cls, n.attr) for cls in _sections_of(n.value, bound))
    # a method of a section, called outside, reads the fields it uses
    for cls in SECTIONS:
        for name, member in vars(cls).items():
            if inspect.isfunction(member) and (cls, name) in found:
                body = ast.parse(textwrap.dedent(inspect.getsource(member)))
                found.update((cls, n.attr) for n in ast.walk(body)
                             if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                             and n.value.id == "self")
    return found


def unread_keys() -> set[str]:
    found = reads()
    out = set()
    for cls, places in SECTIONS.items():
        hints = typing.get_type_hints(cls, vars(C))
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                continue  # a section: its own fields are checked
            if (cls, f.name) not in found:
                out.update(f"{path}.{f.name}" if path else f.name for path, _ in places)
    return out


class ConfigUsageTests(SynchronousTestCase):
    def test_every_key_is_read_outside_the_config_modules(self) -> None:
        unread = unread_keys()
        self.assertEqual(sorted(unread - set(NOT_YET)), [],
                         "parsed and ignored: read these keys where they change behaviour")

    def test_keys_not_implemented_yet_are_still_unread(self) -> None:
        unread = unread_keys()
        self.assertEqual(sorted(set(NOT_YET) - unread), [],
                         "implemented now: remove them from NOT_YET")

    def test_the_scan_tells_sections_apart(self) -> None:
        """``enabled`` is read for most sections; that must not count for another one."""
        found = reads()
        self.assertIn((C.GatewayConfig, "enabled"), found)
        self.assertIn((C.TranscodeProfile, "height"), found)  # through ``for p in profiles``
        self.assertIn((C.GatewayConfig, "public_url"), found)  # through ``base_url()``
        self.assertIn((C.AdminConfig, "enabled"), found)  # a switch of tap.COMPONENTS

    def test_a_spec_that_is_no_switch_does_not_read_enabled(self) -> None:
        tree = ast.parse(textwrap.dedent("""
            COMPONENTS = (Spec("a", "m", "admin", X), Spec("t", "m", "transcoding", X, switch=False))
            def specs_for(config):
                return [s for s in COMPONENTS if getattr(getattr(config, s.section), "enabled", True)]
        """))
        self.assertEqual(_switches(tree), {(C.AdminConfig, "enabled")})
        # without the generic read, a Spec alone reads nothing
        self.assertEqual(_switches(ast.parse('Spec("a", "m", "admin", X)')), set())
