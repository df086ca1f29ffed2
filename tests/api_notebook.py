"""A notebook's cells, using only the API docs/api.md documents (run by
tests/test_api.py as `python3 api_notebook.py WORKLOAD`; it prints one JSON object).

The workload makes 4 getppid() calls and 3 one-byte write()s."""
import json
import sys

import pytrace

workload = sys.argv[1]

# cell 1: count a command's system calls by name and number, size its writes, print some
result = pytrace.run("""
tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @calls[comm, args.id] = count(); }
tracepoint:syscalls:sys_enter_write /pid == cpid/ { @bytes = hist(args.count); }
tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { printf("getppid from %s\\n", comm); }
""", command=f"{workload} getppid 4 write 3")

# cell 2: read the results
calls = result.maps["@calls"]
getppid_calls = calls[("workload", 110)]         # x86-64: getppid is 110, write 1
write_calls = calls[("workload", 1)]
buckets = [(b.low, b.high, b.count) for b in result.maps["@bytes"]]

# cell 3: a typo
try:
    pytrace.run("tracepoint:syscalls:sys_enter_write { @x = count() }\nBEGIN { @y = ; }")
    error = None
except pytrace.CompileError as e:
    error = {"text": str(e),
             "where": [(d.line, d.column, d.message) for d in e.diagnostics]}

print(json.dumps({"getppid": getppid_calls, "write": write_calls, "buckets": buckets,
                  "output": result.output, "exit_code": result.exit_code, "error": error}))
