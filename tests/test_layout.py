"""totaler.py reads top to bottom: each section uses only itself and the sections before it."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = (ROOT / "totaler.py").read_text()
BANNER = "# " + "-" * 75
LONGEST_FUNCTION = 30  # lines, decorators and docstring included
LONGEST_LINE = 120


def section_starts() -> list[tuple[int, str]]:
    """The line number and title of each section: a banner line, then '# Title. ...'."""
    lines = SOURCE.splitlines()
    return [(number + 1, lines[number + 1].lstrip("# ")) for number, line in enumerate(lines) if line == BANNER]


def section_of(line: int, starts: list[tuple[int, str]]) -> int:
    """The index of the section LINE is in (0: before the first banner)."""
    return sum(1 for start, _ in starts if start <= line)


def defined_names(node: ast.stmt) -> set[str]:
    """The module-level names a top-level statement defines."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return {target.id for target in targets if isinstance(target, ast.Name)}


def bound_inside(node: ast.stmt) -> set[str]:
    """Names a top-level function or class binds for itself (arguments, assignments): not module names there."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return set()
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names | {
        a.arg for n in ast.walk(node) if isinstance(n, ast.arguments) for a in ast.walk(n) if isinstance(a, ast.arg)
    }


def forward_uses() -> list[str]:
    """Every use of a module-level name defined in a later section than the statement that uses it."""
    tree = ast.parse(SOURCE)
    starts = section_starts()
    home = {name: section_of(node.lineno, starts) for node in tree.body for name in defined_names(node)}
    found = []
    for node in tree.body:
        here = section_of(node.lineno, starts)
        local = bound_inside(node)
        for used in ast.walk(node):
            if isinstance(used, ast.Name) and used.id not in local and home.get(used.id, here) > here:
                found.append(
                    f"line {used.lineno} ({starts[here - 1][1]}) uses {used.id} (in {starts[home[used.id] - 1][1]})"
                )
    return found


def test_the_module_has_sections_in_the_order_of_its_reading() -> None:
    titles = [title.split(":")[0].split(".")[0] for _, title in section_starts()]
    assert len(titles) >= 8, titles
    assert titles[0] == "Time" and titles[-1] == "The entry point", titles


def test_no_section_uses_a_later_one() -> None:
    assert forward_uses() == []


def length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from a function's first decorator (or its def) to its last line."""
    return node.end_lineno - min([node.lineno] + [d.lineno for d in node.decorator_list]) + 1


def test_no_function_is_longer_than_thirty_lines() -> None:
    functions = [n for n in ast.walk(ast.parse(SOURCE)) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    assert [f"{f.name} (line {f.lineno}): {length(f)}" for f in functions if length(f) > LONGEST_FUNCTION] == []


def test_no_line_is_longer_than_a_hundred_and_twenty_characters() -> None:
    long = [number for number, line in enumerate(SOURCE.splitlines(), 1) if len(line) > LONGEST_LINE]
    assert long == []


def test_all_names_the_public_api_each_defined_documented_and_listed_in_the_readme() -> None:
    import totaler

    readme = (ROOT / "README.md").read_text()
    development = readme[readme.index("## Development") :]
    assert totaler.__all__ == sorted(totaler.__all__)
    for name in totaler.__all__:
        thing = getattr(totaler, name)
        assert thing.__module__ in ("totaler", "typing", "builtins") or name in ("Event", "Counts"), name
        assert f"`{name}`" in development, f"README's Development section does not list {name}"
    documented = [name for name in totaler.__all__ if callable(getattr(totaler, name)) and name[0].islower()]
    assert all(getattr(totaler, name).__doc__ for name in documented)


def test_every_name_outside_all_is_machinery_marked_with_an_underscore() -> None:
    import totaler

    tree = ast.parse(SOURCE)
    defined = set().union(*(defined_names(node) for node in tree.body))
    public = {name for name in defined if not name.startswith("_")}
    assert public == set(totaler.__all__), public ^ set(totaler.__all__)
