#!/usr/bin/env python3
"""Verifies webhook requests with `standardwebhooks` (PyPI), the Standard Webhooks project's own
Python library: a verifier this project did not write, as a receiver would run it.

Reads JSON lines {"secret": "whsec_…", "headers": {name: value}, "body": "<base64>"} on stdin and
writes one JSON line per request: {"ok": true}, or {"ok": false, "error": "…"}.
Driven by tests/common/standard_webhooks.rs; installed by scripts/install-ci-deps.sh.
"""
import base64
import json
import sys

try:
    from standardwebhooks import Webhook
except ImportError:
    sys.exit("standardwebhooks is not installed: python3 -m pip install standardwebhooks "
             "(scripts/install-ci-deps.sh does)")

for line in sys.stdin:
    request = json.loads(line)
    try:
        Webhook(request["secret"]).verify(base64.b64decode(request["body"]), request["headers"])
        print(json.dumps({"ok": True}), flush=True)
    except Exception as e:  # a verification failure, or headers it cannot even read
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
