"""The OpenAPI document as served: valid OpenAPI 3.1, every API route in it, security as enforced, links that
resolve, examples that are real answers. The schemathesis run (tests/fuzz/) holds it to real responses."""
import json
import re

import pytest
from openapi_spec_validator import validate

from app import create_app
from app.openapi import DOCS_URL, build_document, undocumented
from tests.conftest import JWT_TEST_SECRET

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture(scope="module")
def flask_app(tmp_path_factory):
    """Only the URL map is read: no request reaches a database."""
    tmp = tmp_path_factory.mktemp("openapi")
    return create_app({
        "TESTING": True, "DATABASE_URL": f"sqlite:///{tmp / 'unused.db'}", "JWT_SECRET": JWT_TEST_SECRET,
        "UPLOAD_DIR": str(tmp / "uploads"), "INSTANCE_DIR": str(tmp),
        "METRICS_TOKEN": "openapi-metrics-" + "t" * 16,  # every route there is, /metrics included
    })


@pytest.fixture(scope="module")
def document(flask_app) -> dict:
    return build_document(flask_app)


def documented(document: dict) -> dict[tuple[str, str], dict]:
    return {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items() if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_api_route_declares_its_operation(flask_app, document):
    assert undocumented(flask_app) == []
    assert ("/file/download/{file_id}", "get") in documented(document)
    assert ("/logout", "get") in documented(document) and ("/logout", "post") in documented(document)


def test_error_examples_are_real_envelopes(document):
    for key, operation in documented(document).items():
        for status, response in operation["responses"].items():
            example = response.get("content", {}).get("application/json", {}).get("example")
            if example is None:
                continue
            error = example["error"]
            assert example["data"] is None and error["code"] in error_codes(operation, status), (key, status)
            if error["code"] == "validation_error":
                assert error["details"]["fields"], key


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


def error_codes(operation: dict, status: str) -> set[str]:
    schema = operation["responses"].get(status, {}).get("content", {}).get("application/json", {}).get("schema", {})
    return set(schema.get("properties", {}).get("error", {}).get("properties", {}).get("code", {}).get("enum", []))


def test_protected_operations_document_the_token_errors(document):
    token_errors = {"missing_token", "invalid_token", "token_expired"}
    for key, operation in documented(document).items():
        if protected(operation):
            assert operation["security"] == [{"bearerAuth": []}], key
            assert token_errors <= error_codes(operation, "401"), key
        elif operation["security"] == [{"metricsToken": []}]:  # METRICS_TOKEN: a fixed setting, it never expires
            assert error_codes(operation, "401") == {"missing_token", "invalid_token"}, key
        else:
            assert not token_errors & error_codes(operation, "401"), key


def protected(operation: dict) -> bool:
    return {"bearerAuth": []} in operation.get("security", [])


def concrete(path: str) -> str:
    """A URL for a documented path; ids that exist nowhere, since only the auth check is asked about."""
    samples = {"{file_id}": "1", "{role_id}": "1", "{passkey_id}": "0" * 32}
    return re.sub(r"\{[^}]+\}", lambda m: samples.get(m.group(0), "nobody"), path)


def test_security_in_the_document_is_what_the_app_enforces(client, document):
    """Without a token, a documented-protected operation is 401 missing_token and an open one is not."""
    for (path, method), operation in documented(document).items():
        response = client.open(concrete(path), method=method.upper())
        if protected(operation):
            assert response.status_code == 401, (path, method, response.status_code)
            if method != "head":  # a HEAD answer has no body
                assert response.json["error"]["code"] == "missing_token", (path, method)
        else:
            assert response.status_code != 401, (path, method)


def test_document_is_served_and_cached(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["X-Request-ID"] and response.headers["Access-Control-Allow-Origin"] == "*"
    # This app's own document (`document` above also has /metrics, which only an app serving it has).
    assert json.loads(response.data) == json.loads(json.dumps(build_document(client.application)))
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
