"""No SQL is built from values: a review of every query the addon sends.

Every ``execute()`` gets either a string literal with separate parameters or
an ``odoo.tools.SQL`` object, and every ``SQL()`` is built from a literal
(values go in as parameters, names through ``SQL.identifier``). Formatting a
value into the text (f-strings, ``%``, ``.format()``, ``+``) fails this test.
The Odoo tier proves the result with hostile values (``test_security``).
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("models", "wizards", "tools", "controllers")
# SQL() calls whose text is not a literal, each with the reason it is safe.
REVIEWED = {
    ("models/bulk_sql.py", "SQL(ctype)"): "a column type from the field's "
    "definition (Field.column_type), never a value",
}


def _python_files():
    for folder in CODE:
        yield from sorted((ROOT / folder).rglob("*.py"))


def _is_literal(node):
    """A str constant, or a choice between str constants."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.IfExp):
        return _is_literal(node.body) and _is_literal(node.orelse)
    return False


def _is_sql_call(node):
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "SQL")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "SQL")
    )


def _findings(path, root=ROOT):
    relative = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=relative)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        where = f"{relative}:{node.lineno}"
        if _is_sql_call(node):
            text = node.args[0] if node.args else None
            if text is None or _is_literal(text):
                continue
            if (relative, ast.unparse(node)) in REVIEWED:
                continue
            yield f"{where}: SQL() built from {ast.unparse(text)[:60]}"
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "execute":
            query = node.args[0] if node.args else None
            if query is None or _is_literal(query) or _is_sql_call(query):
                continue
            yield f"{where}: execute() of {ast.unparse(query)[:60]}"


def test_every_query_is_a_literal_or_an_sql_object():
    files = list(_python_files())
    assert len(files) > 10
    findings = [finding for path in files for finding in _findings(path)]
    assert findings == []


def test_the_review_catches_formatted_sql(tmp_path):
    bad = tmp_path / "models" / "bad.py"
    bad.parent.mkdir()
    bad.write_text(
        "def f(cr, name, SQL):\n"
        "    cr.execute(f\"SELECT 1 WHERE n = '{name}'\")\n"
        '    cr.execute("SELECT 1 WHERE n = %s" % name)\n'
        '    cr.execute(SQL("SELECT %s", name))\n'
        '    cr.execute(SQL("SELECT " + name))\n'
    )
    found = list(_findings(bad, root=tmp_path))
    assert [f.split(":")[1] for f in found] == ["2", "3", "5"]
