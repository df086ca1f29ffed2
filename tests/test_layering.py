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
