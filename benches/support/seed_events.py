#!/usr/bin/env python3
"""benches/support/seed_events.py SEED_BENCH N DEVICES — the seed's own `events()` generator,
lifted out of seed_bench.py without running its timing code: N event lines from DEVICES devices on
stdout, one per line. Shared by benches/core_vs_seed.sh and benches/process_cli.sh, so both feed
exactly the seed's workload."""
import ast
import json
import sys

src = open(sys.argv[1]).read()
fn = next(x for x in ast.parse(src).body if isinstance(x, ast.FunctionDef) and x.name == 'events')
scope = {'json': json}
exec(compile(ast.Module(body=[fn], type_ignores=[]), sys.argv[1], 'exec'), scope)
out = sys.stdout
for line in scope['events'](int(sys.argv[2]), int(sys.argv[3])):
    out.write(line + '\n')
