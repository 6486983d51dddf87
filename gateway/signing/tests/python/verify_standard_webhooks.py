"""Verifies captured Standard Webhooks requests with the reference Python library.

Input (JSON file, argv[1]): {"headers": {...}, "body_b64": "...", "secrets": ["whsec_…"],
"public_key": "whpk_…" (optional)}.
Output (stdout, JSON): {"secrets": [true | "error text", ...], "v1a": true | "error" | null}.
Exit 3 with MISSING_PIP_PACKAGE when a dependency is not installed.
"""
import base64
import json
import sys

try:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
except ImportError:
    print("MISSING_PIP_PACKAGE: standardwebhooks")
    sys.exit(3)

case = json.load(open(sys.argv[1]))
body = base64.b64decode(case["body_b64"])
headers = case["headers"]

results = []
for secret in case["secrets"]:
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
        results.append(True)
    except WebhookVerificationError as error:
        results.append(str(error))

v1a = None
if case.get("public_key"):
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        print("MISSING_PIP_PACKAGE: cryptography")
        sys.exit(3)
    public = Ed25519PublicKey.from_public_bytes(
        base64.b64decode(case["public_key"].removeprefix("whpk_"))
    )
    signed = b".".join(
        [headers["webhook-id"].encode(), headers["webhook-timestamp"].encode(), body]
    )
    v1a = "no v1a signature in the header"
    for entry in headers["webhook-signature"].split(" "):
        version, signature = entry.split(",", 1)
        if version != "v1a":
            continue
        try:
            public.verify(base64.b64decode(signature), signed)
            v1a = True
            break
        except InvalidSignature:
            v1a = "invalid v1a signature"

print(json.dumps({"secrets": results, "v1a": v1a}))
