"""Recomputes the `hmac` scheme's signature with Python's standard library.

Input (JSON file, argv[1]): {"signature": "hex", "body_b64": "...", "secret": "…"}.
Output (stdout, JSON): {"matches": bool}.
"""
import base64
import hashlib
import hmac
import json
import sys

case = json.load(open(sys.argv[1]))
body = base64.b64decode(case["body_b64"])
expected = hmac.new(case["secret"].encode(), body, hashlib.sha256).hexdigest()
print(json.dumps({"matches": hmac.compare_digest(expected, case["signature"])}))
