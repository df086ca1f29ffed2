"""The runtime never imports the compiler (nor lark / llvmlite): a cached object runs without them."""
import subprocess
import sys


def test_runtime_imports_no_compiler():
    code = ("import sys, pytrace.runtime.session, pytrace.runtime.output, pytrace.runtime.maps; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'llvmlite') or "
            "m in ('pytrace.compiler', 'pytrace.registry', 'pytrace.parser', 'pytrace.passes')); "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_cache_hit_path_imports_no_compiler(tmp_path):
    """What `pytrace` imports before it knows whether it must compile."""
    code = ("import sys, pytrace.cli, pytrace.cache; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'llvmlite')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


RUNTIME = __import__("pathlib").Path(__file__).resolve().parent.parent / "runtime"


def test_runtime_functions_are_short():
    import ast
    long = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(RUNTIME)}:{node.lineno} {node.name} ({lines})")
    assert long == []


def test_runtime_modules_import_no_cycle():
    """Module- and function-level imports among runtime modules form no cycle."""
    import ast
    modules = {}
    for path in RUNTIME.rglob("*.py"):
        parts = list(path.relative_to(RUNTIME).with_suffix("").parts)
        package = parts[-1] == "__init__"
        modules[".".join(["runtime"] + parts[:len(parts) - package])] = (path, package)
    graph = {}
    for name, (path, package) in modules.items():
        here = name.split(".") if package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:
                    deps.add(base + "." + alias.name if base + "." + alias.name in modules else base)
        graph[name] = {d for d in deps if d in modules and d != name}
    done, path_ = set(), []

    def visit(name):
        assert name not in path_, "import cycle: " + " -> ".join(path_[path_.index(name):] + [name])
        if name in done:
            return
        path_.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        path_.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
