"""The OpenAPI document against the code: every route documented, nothing documented that is not routed,
path parameters typed as the URL converters type them, error codes the app can actually produce, and
the document valid OpenAPI 3.1. The schemathesis run (tests/fuzz/) holds it to real responses."""
import ast
import json
import re
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from werkzeug.routing import IntegerConverter

from app import create_app, errors
from app.errors import ApiError
from app.openapi import DOCS_URL, REQUEST_MODELS, build_document
from tests.conftest import JWT_TEST_SECRET

ROOT = Path(__file__).resolve().parent.parent
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
AUTOMATIC = {"HEAD", "OPTIONS"}  # added by Flask to every rule; CORS answers OPTIONS
UNDOCUMENTED_ENDPOINTS = re.compile(r"^(static|swagger_ui\..*)$")  # Swagger UI's own assets under /docs/
ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")


@pytest.fixture(scope="module")
def flask_app(tmp_path_factory):
    """Only the URL map is read: no request reaches a database."""
    tmp = tmp_path_factory.mktemp("openapi")
    return create_app({
        "TESTING": True, "DATABASE_URL": f"sqlite:///{tmp / 'unused.db'}", "JWT_SECRET": JWT_TEST_SECRET,
        "UPLOAD_DIR": str(tmp / "uploads"), "INSTANCE_DIR": str(tmp),
    })


@pytest.fixture(scope="module")
def document() -> dict:
    return build_document()


def routed(flask_app) -> dict[tuple[str, str], object]:
    """(OpenAPI path, method) → werkzeug rule, for every rule the API serves."""
    operations = {}
    for rule in flask_app.url_map.iter_rules():
        if UNDOCUMENTED_ENDPOINTS.match(rule.endpoint):
            continue
        path = ARGUMENT.sub(r"{\1}", rule.rule)
        for method in rule.methods - AUTOMATIC:
            operations[(path, method.lower())] = rule
    return operations


def documented(document: dict) -> dict[tuple[str, str], dict]:
    return {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items() if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_documented(flask_app, document):
    missing = sorted(set(routed(flask_app)) - set(documented(document)))
    assert not missing, f"routes missing from app/openapi.py: {missing}"


def test_every_documented_operation_is_routed(flask_app, document):
    stale = sorted(set(documented(document)) - set(routed(flask_app)))
    assert not stale, f"documented but not served: {stale}"


def test_path_parameters_match_the_url_converters(flask_app, document):
    operations = documented(document)
    for key, rule in routed(flask_app).items():
        params = {p["name"]: p for p in operations[key].get("parameters", []) if p["in"] == "path"}
        assert set(params) == set(rule.arguments), key
        for name, converter in rule._converters.items():
            schema = params[name]["schema"]
            if isinstance(converter, IntegerConverter):
                assert schema["type"] == "integer", (key, name)
                assert schema.get("maximum") == converter.max, (key, name)
            else:
                assert schema["type"] == "string", (key, name)


def test_operation_ids_are_unique(document):
    ids = [operation["operationId"] for operation in documented(document).values()]
    assert len(ids) == len(set(ids))


def test_links_name_real_operations_and_parameters(document):
    operations = {op["operationId"]: op for op in documented(document).values()}
    for key, operation in documented(document).items():
        for response in operation["responses"].values():
            for name, link in response.get("links", {}).items():
                target = operations[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", [])}
                assert set(link.get("parameters", {})) <= names, (key, name)


def producible_codes() -> set[str]:
    """Every `error.code` app/errors.py can put in a response: ApiError classes, HTTP statuses, and the
    literal codes of its handlers (`envelope_error("…", …)`, `HTTP_CODES.get(status, "…")`)."""
    codes = {cls.code for cls in all_subclasses(ApiError)} | set(errors.HTTP_CODES.values())
    for node in ast.walk(ast.parse((ROOT / "app" / "errors.py").read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "envelope_error":
            literal = node.args[0] if node.args else None
        elif isinstance(func, ast.Attribute) and func.attr == "get" and getattr(func.value, "id", "") == "HTTP_CODES":
            literal = node.args[1] if len(node.args) > 1 else None
        else:
            continue
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            codes.add(literal.value)
    return codes


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def documented_codes(document: dict) -> set[str]:
    codes = set(document["components"]["schemas"]["ErrorCode"]["enum"])
    for operation in documented(document).values():
        for status in operation["responses"]:
            codes |= error_codes(operation, status)
    return codes


def test_documented_error_codes_are_ones_the_app_produces(document):
    unknown = documented_codes(document) - producible_codes()
    assert not unknown, f"documented error codes nothing in app/errors.py produces: {unknown}"


def test_every_error_class_is_in_the_code_enum(document):
    enum = set(document["components"]["schemas"]["ErrorCode"]["enum"])
    raised = {cls.code for cls in all_subclasses(ApiError)}
    assert raised <= enum, f"missing from ErrorCode: {raised - enum}"


def test_request_bodies_are_the_route_models(document):
    schemas = document["components"]["schemas"]
    for model in REQUEST_MODELS:
        expected = model.model_json_schema(ref_template="#/components/schemas/{model}")
        expected.pop("$defs", None)
        assert schemas[model.__name__] == expected


def error_codes(operation: dict, status: str) -> set[str]:
    schema = operation["responses"].get(status, {}).get("content", {}).get("application/json", {}).get("schema", {})
    return set(schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {}).get("enum", []))


def test_protected_operations_document_the_token_errors(document):
    token_errors = {"missing_token", "invalid_token", "token_expired"}
    for key, operation in documented(document).items():
        if protected(operation):
            assert operation["security"] == [{"bearerAuth": []}], key
            assert token_errors <= error_codes(operation, "401"), key
        else:
            assert not token_errors & error_codes(operation, "401"), key


def protected(operation: dict) -> bool:
    return {"bearerAuth": []} in operation.get("security", [])


def concrete(path: str) -> str:
    """A URL for a documented path; ids that exist nowhere, since only the auth check is asked about."""
    return re.sub(r"\{[^}]+\}", lambda m: "1" if m.group(0) in ("{file_id}", "{role_id}") else "nobody", path)


def test_security_in_the_document_is_what_the_app_enforces(client, document):
    """Without a token, a documented-protected operation is 401 missing_token and an open one is not."""
    for (path, method), operation in documented(document).items():
        response = client.open(concrete(path), method=method.upper())
        if protected(operation):
            assert response.status_code == 401, (path, method, response.status_code)
            assert response.json["error"]["code"] == "missing_token", (path, method)
        else:
            assert response.status_code != 401, (path, method)


def test_document_is_served_and_cached(client, document):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["X-Request-ID"] and response.headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(response.data) == json.loads(json.dumps(document))
    again = client.get("/openapi.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_swagger_ui_references_only_its_own_assets(client):
    page = client.get(DOCS_URL)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert urls and all(url.startswith(DOCS_URL + "/") for url in urls), urls
    absolute = re.findall(r"""https?://[^\s"'<>]+""", html)
    assert all(url.startswith("http://localhost/docs/") for url in absolute), absolute  # the OAuth2 redirect page
    assert '"validatorUrl": null' in html  # no badge fetched from swagger.io
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.data) > 0, url
