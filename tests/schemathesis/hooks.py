"""schemathesis hooks (SCHEMATHESIS_HOOKS=hooks): every request carries an `Authorization` header,
mostly the `admin` token on the admin routes and the `buyer` token elsewhere, sometimes the other one
(so that `403` is reached) and sometimes whatever schemathesis generated for the bearer scheme, often
nothing (`401`). The tokens come from the file named by
ST_TOKENS_FILE, written by seed.py; the choice is drawn from a generator seeded by
ST_SEED, so a run with one worker and one seed repeats itself.
"""

import json
import os
import random

import schemathesis

with open(os.environ["ST_TOKENS_FILE"]) as f:
    TOKENS = json.load(f)

CHOICE = random.Random(os.environ.get("ST_SEED", "0"))

# Routes (method, path prefix) that need the `admin` role.
ADMIN_ROUTES = [
    ("POST", "/api/stocks"),
    ("PUT", "/api/stocks/"),
    ("PUT", "/api/catalog/"),
    ("GET", "/api/sagas"),
    ("GET", "/api/admin/"),
    ("POST", "/api/admin/"),
]


def needs_admin(method, path):
    return any(method == m and path.startswith(p) for m, p in ADMIN_ROUTES)


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    usual, other = ("admin", "buyer") if needs_admin(operation.method.upper(), operation.path) else ("buyer", "admin")
    roll = CHOICE.random()
    if roll < 0.05:
        return
    headers = dict(case.headers or {})
    headers["Authorization"] = "Bearer " + TOKENS[usual if roll < 0.85 else other]
    case.headers = headers
