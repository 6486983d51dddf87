"""Verifies a captured JWT with PyJWT and recomputes the body hash.

Input (JSON file, argv[1]): {"authorization": "Bearer …", "body_b64": "...",
"algorithm": "HS256" | "RS256", "secret": "…" (HS256) | "private_key_pem": "…" (RS256,
the public key is derived from it here), "issuer": "…", "audience": "…" | null}.
Output (stdout, JSON): {"claims": {...}, "header": {...}, "body_hash_matches": bool}
or {"error": "…"} when PyJWT rejects the token.
Exit 3 with MISSING_PIP_PACKAGE when a dependency is not installed.
"""
import base64
import hashlib
import json
import sys

try:
    import jwt
    from jwt.exceptions import InvalidTokenError

    jwt.PyJWT  # the PyJWT package, not another module named `jwt`
except (ImportError, AttributeError):
    print("MISSING_PIP_PACKAGE: PyJWT")
    sys.exit(3)

case = json.load(open(sys.argv[1]))
body = base64.b64decode(case["body_b64"])
scheme, _, token = case["authorization"].partition(" ")
assert scheme == "Bearer", scheme

if case["algorithm"] == "RS256":
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:
        print("MISSING_PIP_PACKAGE: cryptography")
        sys.exit(3)
    key = load_pem_private_key(case["private_key_pem"].encode(), password=None).public_key()
else:
    key = case["secret"]

required = ["iss", "sub", "iat", "exp", "jti", "body_sha256"]
if case.get("audience") is not None:
    required.append("aud")
try:
    claims = jwt.decode(
        token,
        key,
        algorithms=[case["algorithm"]],
        issuer=case["issuer"],
        audience=case.get("audience"),
        options={"require": required},
    )
except InvalidTokenError as error:
    print(json.dumps({"error": f"{type(error).__name__}: {error}"}))
    sys.exit(0)

print(
    json.dumps(
        {
            "claims": claims,
            "header": jwt.get_unverified_header(token),
            "body_hash_matches": claims["body_sha256"] == hashlib.sha256(body).hexdigest(),
        }
    )
)
