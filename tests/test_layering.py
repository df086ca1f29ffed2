"""The runtime never imports the compiler (nor lark / llvmlite): a cached object runs without them."""
import subprocess
import sys


def test_runtime_imports_no_compiler():
    code = ("import sys, pytrace.runtime.session, pytrace.runtime.output, pytrace.runtime.maps; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'llvmlite') or "
            "m in ('pytrace.compiler', 'pytrace.builtins', 'pytrace.language.parser', 'pytrace.passes')); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_cache_hit_path_imports_no_compiler(tmp_path):
    """What `pytrace` imports before it knows whether it must compile."""
    code = ("import sys, pytrace.cli, pytrace.cache; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'llvmlite')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
# package name -> folder (pyproject.toml's package-dir): the compiler and the runtime
TREES = {"pytrace": ROOT / "trace", "pytrace.runtime": ROOT / "runtime"}


def _sources():
    """(module name, path, is a package) of every module of both trees."""
    for package, folder in TREES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if package == "pytrace" and rel.parts[0] in ("runtime", "grammar"):
                continue            # (links to the other folders in a development tree)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            yield ".".join([package] + parts[:len(parts) - is_package]), path, is_package


def test_functions_are_short():
    import ast
    long = []
    for _name, path, _pkg in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def _import_graph():
    """Module -> the modules it imports (module- and function-level, relative or
    absolute), within both trees."""
    import ast
    sources = {name: (path, pkg) for name, path, pkg in _sources()}
    graph = {}
    for name, (path, is_package) in sources.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here[:len(here) - node.level + 1] +
                                    ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for alias in node.names:
                    full = base + "." + alias.name
                    deps.add(full if full in sources else base)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in sources and d != name}
    return graph


def test_modules_import_no_cycle():
    """No import cycle among pytrace's modules, function-level imports included."""
    graph = _import_graph()
    done, stack = set(), []

    def visit(name):
        assert name not in stack, "import cycle: " + " -> ".join(stack[stack.index(name):] + [name])
        if name in done:
            return
        stack.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
