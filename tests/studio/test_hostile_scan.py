"""Every route of the OpenAPI document, every parameter and top-level body field, with hostile values one at a
time (non-finite and huge numbers, huge strings, NUL, wrong types, digit tricks): never a 500. Raw JSON carries
the tokens Python's json module accepts (Infinity, NaN, 1e999), which a client library would never send."""

from __future__ import annotations

import json

import pytest

HOSTILE = [
    "Infinity",
    "-Infinity",
    "NaN",
    "1e999",
    "1e308",
    "-1e308",
    "18446744073709551616",
    "-9223372036854775809",
    '"' + "x" * 100_000 + '"',
    '"a\\u0000b"',
    '"\\u0000"',
    '"1_0"',
    '"+1"',
    '" 1"',
    '"١"',
    "true",
    "null",
    "[]",
    "{}",
    "[1e999]",
    '{"a": NaN}',
    '"../../etc/passwd"',
    '"<lora:/etc/passwd:1>"',
]
QUERY = ["Infinity", "NaN", "1e999", "1180591620717411303424", "-1", "1_0", "+1", "١", "x" * 5000, "a\x00b", ""]
PATH = ["0", "-1", "1_0", "+1", "١", "1e3", "9" * 40, "nan", "x" * 500, "%00"]


def _fill(schema: dict, components: dict) -> object:
    """A plausible value for a JSON schema (the scan then replaces one field at a time)."""
    if "$ref" in schema:
        return _fill(components[schema["$ref"].rsplit("/", 1)[-1]], components)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _fill(options[0], components)
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _fill(props[name], components) for name in schema.get("required", []) if name in props}
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": False, "array": []}.get(kind, "x")


def _operations(document: dict):
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, op


def test_no_route_answers_500_to_hostile_values(client):
    from fastapi.testclient import TestClient

    client = TestClient(client.app, raise_server_exceptions=False)  # count a 500, do not stop at the first
    document = client.get("/openapi.json").json()
    components = document.get("components", {}).get("schemas", {})
    tried, failures = 0, []

    def call(method: str, url: str, **kwargs) -> None:
        nonlocal tried
        tried += 1
        response = client.request(method.upper(), url, **kwargs)
        if response.status_code >= 500:
            failures.append(f"{method.upper()} {url[:120]} {str(kwargs)[:160]} -> {response.status_code}")

    for path, method, op in _operations(document):
        params = op.get("parameters", [])
        in_path = [p["name"] for p in params if p["in"] == "path"]
        url = path
        for name in in_path:
            url = url.replace("{" + name + "}", "1")
        for name in in_path:
            for value in PATH:
                call(method, path.replace("{" + name + "}", value).replace("{", "").replace("}", ""))
        for param in (p for p in params if p["in"] == "query"):
            for value in QUERY:
                call(method, url, params={param["name"]: value})
        for param in (p for p in params if p["in"] == "header"):
            for value in ("x" * 300, "é".encode(), b"\x01"):
                call(method, url, headers={param["name"]: value})
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None:
            continue
        schema = body["schema"]
        if "$ref" in schema:
            schema = components[schema["$ref"].rsplit("/", 1)[-1]]
        valid = _fill(schema, components)
        fields = list(schema.get("properties", {})) or [None]
        for field in fields:
            for raw in HOSTILE:
                if field is None:
                    text = raw
                else:
                    rest = json.dumps({k: v for k, v in valid.items() if k != field})
                    text = "{" + json.dumps(field) + ": " + raw + ("," + rest[1:] if rest != "{}" else "}")
                call(method, url, content=text.encode(), headers={"content-type": "application/json"})
    assert tried > 2000
    assert not failures, "\n".join(failures[:30])


@pytest.mark.parametrize("raw", ["Infinity", "NaN", "-Infinity", "1e999"])
def test_non_finite_json_numbers_are_a_422_naming_the_field(client, raw):
    body = '{"prompt": "johnhero", "cfg_scale": RAW}'.replace("RAW", raw)
    response = client.post("/api/v1/generations", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "cfg_scale" in response.json()["error"]["message"]
