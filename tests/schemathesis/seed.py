"""Prepares a running node for schemathesis: mints an `admin` and a `buyer` token through the node's
own token route, writes a few stocks and catalog products, places orders until a payment is
dead-lettered, and writes the schemathesis configuration that sends these identifiers (beside
generated ones) and the tokens.

Usage: seed.py BASE_URL OUT_DIR  (writes OUT_DIR/schemathesis.toml)
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid

ADMIN = "st-admin"
BUYER = "st-buyer"
SKUS = ["SKU-ST-1", "SKU-ST-2", "SKU-ST-3", "SKU-ST-4"]
PRICE = "19.90"


def call(base, method, path, body=None, token=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"seed: {method} {path} answered {e.code}: {e.read()[:500]!r}")


def token(base, user_id, roles):
    status, body = call(
        base, "POST", "/api/auth/token", {"userId": user_id, "roles": roles, "ttlSeconds": 86400}
    )
    assert status == 200, status
    return body["accessToken"]


def toml_list(values):
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def main():
    base, out = sys.argv[1].rstrip("/"), sys.argv[2]
    admin = token(base, ADMIN, ["admin"])
    buyer = token(base, BUYER, ["buyer"])
    for sku in SKUS:
        call(base, "POST", "/api/stocks", {"skuId": sku, "availableQty": 1_000_000}, admin)
        call(
            base,
            "PUT",
            f"/api/catalog/products/{sku}",
            {"name": f"Product {sku}", "description": "seeded", "price": PRICE},
            admin,
        )
    # Orders until a payment is dead-lettered (the node fails half of them, once, for good).
    orders, letters = [], []
    deadline = time.monotonic() + 30
    while not letters or len(orders) < 2:
        if time.monotonic() > deadline:
            raise SystemExit(f"seed: no dead letter after {len(orders)} orders")
        sku = SKUS[len(orders) % 2]
        status, body = call(
            base,
            "POST",
            "/api/orders",
            {"userId": BUYER, "items": [{"skuId": sku, "quantity": 1, "price": PRICE}]},
            buyer,
            {"Idempotency-Key": str(uuid.uuid4())},
        )
        assert status == 201, status
        orders.append(body["orderId"])
        time.sleep(0.2)
        _, page = call(base, "GET", "/api/admin/dead-letters?status=DEAD", token=admin)
        letters = [letter["id"] for letter in page["items"]]

    # Half of the generated values of these parameters are replaced by identifiers that exist, so that
    # the happy paths (a known order, stock row, product, the caller's own user id) are reached too.
    with open(f"{out}/schemathesis.toml", "w") as f:
        f.write(
            f"""\
# What `st replay` reads, kept with the run's files instead of in the working directory.
[cache]
directory = {json.dumps(out + "/cache")}

[dictionaries.orders]
values = {toml_list(orders)}

[dictionaries.skus]
values = {toml_list(SKUS)}

[dictionaries.letters]
values = {toml_list(letters)}

[dictionaries.users]
values = {toml_list([ADMIN, BUYER])}

[parameters]
"path.orderId" = {{ dictionary = "orders", probability = 0.5 }}
"query.orderId" = {{ dictionary = "orders", probability = 0.5 }}
"path.skuId" = {{ dictionary = "skus", probability = 0.5 }}
"body.skuId" = {{ dictionary = "skus", probability = 0.5 }}
"body.orderId" = {{ dictionary = "orders", probability = 0.3 }}
"body.items[*].skuId" = {{ dictionary = "skus", probability = 0.5 }}
"body.userId" = {{ dictionary = "users", probability = 0.5 }}
"path.id" = {{ dictionary = "letters", probability = 0.5 }}

# The admin's token on every request, the buyer's where a buyer is who calls: placing and reading
# orders, notifications. schemathesis also sends requests without it or with a bad one (ignored_auth).
[headers]
Authorization = "Bearer {admin}"

[[operations]]
include-path-regex = "^/api/(orders|notifications)"
headers = {{ Authorization = "Bearer {buyer}" }}
"""
        )
    print(
        f"seed: tokens for {ADMIN} and {BUYER}, {len(SKUS)} stocks and products, "
        f"{len(orders)} orders, dead letters {', '.join(letters)}"
    )


if __name__ == "__main__":
    main()
