"""Roles, grants and permission checks, with a superuser made by `flask create-superuser`."""
import jwt
import pytest
import sqlalchemy as sa

from tests.conftest import JWT_TEST_SECRET
from tests.support.api import PASSWORD, bearer, sign_up
from tests.support.api import error_code

ROOT = "root@example.com"


def create_superuser(app, *args: str, env: dict | None = None, input: str | None = None):
    environment = {"SUPERUSER_PASSWORD": None, **(env or {})}  # None: unset, whatever the shell had
    return app.test_cli_runner().invoke(args=["create-superuser", *args], env=environment, input=input)


def sign_in(client, login: str, password: str = PASSWORD):
    return client.post("/signin", json={"id": login, "password": password})


def user_count(app) -> int:
    with app.extensions["engine"].connect() as connection:
        return connection.execute(sa.text("SELECT COUNT(*) FROM users")).scalar_one()


def roles_claim(tokens: dict) -> list[str]:
    return jwt.decode(tokens["access_token"], JWT_TEST_SECRET, algorithms=["HS256"])["roles"]


@pytest.fixture
def admin(app, client) -> dict[str, str]:
    """Authorization headers of a superuser made through the CLI."""
    result = create_superuser(app, "--id", ROOT, env={"SUPERUSER_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    response = sign_in(client, ROOT)
    assert response.status_code == 200
    return bearer(response.json["data"]["access_token"])


def make_role(client, headers, name: str = "editor", permissions: list[str] | None = None, **extra) -> dict:
    body = {"name": name, "permissions": ["files:write"] if permissions is None else permissions, **extra}
    response = client.post("/roles", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json["data"]


# --- create-superuser -----------------------------------------------------------------------------


def test_create_superuser_from_environment(app, client):
    result = create_superuser(app, "--id", "Root@Example.com", env={"SUPERUSER_PASSWORD": PASSWORD})
    assert result.exit_code == 0, result.output
    assert "created superuser root@example.com" in result.output and PASSWORD not in result.output
    response = sign_in(client, ROOT)
    assert response.status_code == 200
    headers = bearer(response.json["data"]["access_token"])
    assert client.get("/roles", headers=headers).status_code == 200
    mine = client.get(f"/users/{ROOT}/roles", headers=headers).json["data"]
    assert mine == {"user": ROOT, "superuser": True, "roles": [], "permissions": []}


def test_create_superuser_asks_for_the_password_twice(app, client):
    result = create_superuser(app, "--id", "+7 999 123-45-67", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Password") == 1 and "Repeat for confirmation" in result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert sign_in(client, "+79991234567").status_code == 200


def test_create_superuser_refuses_bad_input(app, client):
    mismatch = create_superuser(app, "--id", ROOT, input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code != 0 and "do not match" in mismatch.output
    short = create_superuser(app, "--id", ROOT, env={"SUPERUSER_PASSWORD": "short"})
    assert short.exit_code == 1 and "password" in short.output
    bad_login = create_superuser(app, "--id", "root", env={"SUPERUSER_PASSWORD": PASSWORD})
    assert bad_login.exit_code == 1 and "id" in bad_login.output
    missing = create_superuser(app, env={"SUPERUSER_PASSWORD": PASSWORD})
    assert missing.exit_code == 2 and "--id" in missing.output
    assert user_count(app) == 0


def test_create_superuser_promotes_an_existing_user_idempotently(app, client):
    ann = sign_up(client)
    headers = bearer(ann["access_token"])
    assert client.get("/roles", headers=headers).status_code == 403

    for _ in range(2):
        result = create_superuser(app, "--id", "ANN@example.com")  # no password asked for
        assert result.exit_code == 0, result.output
        assert "password unchanged" in result.output
    assert user_count(app) == 1
    assert client.get("/roles", headers=headers).status_code == 200  # the same token, promoted at once
    assert sign_in(client, "ann@example.com").status_code == 200


def test_create_superuser_can_reset_a_password(app, client):
    ann = sign_up(client)
    result = create_superuser(app, "--id", "ann@example.com", "--set-password",
                              env={"SUPERUSER_PASSWORD": "brand new password"})
    assert result.exit_code == 0 and "password replaced" in result.output
    assert client.get("/info", headers=bearer(ann["access_token"])).status_code == 401
    assert sign_in(client, "ann@example.com").status_code == 401
    assert sign_in(client, "ann@example.com", "brand new password").status_code == 200


# --- role CRUD -------------------------------------------------------------------------------------


def test_role_crud_by_superuser(client, admin):
    created = client.post("/roles", json={"name": "editor", "description": "Edits things",
                                          "permissions": ["files:write", "files:read", "files:write"]}, headers=admin)
    assert created.status_code == 201
    role = created.json["data"]
    assert set(role) == {"id", "name", "description", "permissions"} and isinstance(role["id"], int)
    assert role["name"] == "editor" and role["description"] == "Edits things"
    assert role["permissions"] == ["files:read", "files:write"]  # de-duplicated, sorted
    other = make_role(client, admin, "auditor", [])
    assert other["description"] == "" and other["permissions"] == []

    listed = client.get("/roles", headers=admin)
    assert listed.status_code == 200
    assert [r["name"] for r in listed.json["data"]["items"]] == ["auditor", "editor"]
    assert listed.json["data"]["items"][1] == role

    renamed = client.put(f"/roles/{role['id']}", json={"name": "writer", "permissions": ["files:write"]}, headers=admin)
    assert renamed.status_code == 200
    assert renamed.json["data"] == {**role, "name": "writer", "permissions": ["files:write"]}
    described = client.put(f"/roles/{role['id']}", json={"description": "Writes files"}, headers=admin)
    assert described.json["data"] == {**role, "name": "writer", "description": "Writes files",
                                      "permissions": ["files:write"]}

    deleted = client.delete(f"/roles/{role['id']}", headers=admin)
    assert deleted.status_code == 200
    assert deleted.json == {"data": {"id": role["id"], "deleted": True}, "error": None}
    assert [r["name"] for r in client.get("/roles", headers=admin).json["data"]["items"]] == ["auditor"]
    again = client.delete(f"/roles/{role['id']}", headers=admin)
    assert again.status_code == 404 and error_code(again) == "not_found"
    assert client.put(f"/roles/{role['id']}", json={"name": "x"}, headers=admin).status_code == 404


def test_role_accepts_form_encoded_body(client, admin):
    response = client.post("/roles", data={"name": "ops", "permissions": ["b:run", "a:read"]}, headers=admin)
    assert response.status_code == 201
    assert response.json["data"]["permissions"] == ["a:read", "b:run"]


def test_duplicate_role_name_is_409(client, admin):
    editor = make_role(client, admin, "editor")
    make_role(client, admin, "auditor")
    duplicate = client.post("/roles", json={"name": "editor", "permissions": []}, headers=admin)
    assert duplicate.status_code == 409 and error_code(duplicate) == "role_exists"
    clash = client.put(f"/roles/{editor['id']}", json={"name": "auditor"}, headers=admin)
    assert clash.status_code == 409 and error_code(clash) == "role_exists"
    same = client.put(f"/roles/{editor['id']}", json={"name": "editor"}, headers=admin)
    assert same.status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"permissions": []}, "name"),
        ({"name": "editor"}, "permissions"),
        ({"name": "", "permissions": []}, "name"),
        ({"name": "Editor", "permissions": []}, "name"),
        ({"name": "has space", "permissions": []}, "name"),
        ({"name": "x" * 65, "permissions": []}, "name"),
        ({"name": 7, "permissions": []}, "name"),
        ({"name": "editor", "permissions": "files:write"}, "permissions"),
        ({"name": "editor", "permissions": [""]}, "permissions.0"),
        ({"name": "editor", "permissions": ["ok", "Files:Write"]}, "permissions.1"),
        ({"name": "editor", "permissions": [f"p{i}" for i in range(101)]}, "permissions"),
        ({"name": "editor", "permissions": [], "description": "d" * 256}, "description"),
        ({"name": "editor", "permissions": [], "admin": True}, "admin"),
    ],
)
def test_create_role_validates_input(client, admin, body, field):
    response = client.post("/roles", json=body, headers=admin)
    assert response.status_code == 400 and error_code(response) == "validation_error"
    assert field in response.json["error"]["details"]["fields"]


@pytest.mark.parametrize("body", [{}, {"name": None}, {"permissions": None}, {"name": "Bad Name"}, {"id": 3}])
def test_update_role_validates_input(client, admin, body):
    role = make_role(client, admin)
    response = client.put(f"/roles/{role['id']}", json=body, headers=admin)
    assert response.status_code == 400 and error_code(response) == "validation_error"


@pytest.mark.parametrize("role_id", ["abc", "-1", "1.5", "99999999999999999999"])
def test_non_integer_or_huge_role_id_is_404(client, admin, role_id):
    sign_up(client)
    for method, path in [("PUT", f"/roles/{role_id}"), ("DELETE", f"/roles/{role_id}"),
                         ("POST", f"/users/ann@example.com/roles/{role_id}")]:
        response = client.open(path, method=method, json={"name": "x"}, headers=admin)
        assert response.status_code == 404 and error_code(response) == "not_found"


# --- who may manage --------------------------------------------------------------------------------


MANAGING = [
    ("GET", "/roles", None),
    ("POST", "/roles", {"name": "mine", "permissions": ["roles:manage"]}),
    ("PUT", "/roles/{role}", {"name": "mine"}),
    ("DELETE", "/roles/{role}", None),
    ("POST", "/users/ann@example.com/roles/{role}", None),
    ("DELETE", "/users/ann@example.com/roles/{role}", None),
    ("GET", "/users/root@example.com/roles", None),
]


@pytest.mark.parametrize("method, path, body", MANAGING)
def test_plain_user_gets_403_and_nothing_changes(client, admin, signed_in, method, path, body):
    role = make_role(client, admin, "editor", ["roles:manage"])
    response = client.open(path.format(role=role["id"]), method=method, json=body, headers=signed_in)
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert client.get("/roles", headers=admin).json["data"]["items"] == [role]
    assert client.get("/users/ann@example.com/roles", headers=signed_in).json["data"]["roles"] == []


@pytest.mark.parametrize("method, path, body", MANAGING)
def test_managing_needs_a_token(client, method, path, body):
    response = client.open(path.format(role=1), method=method, json=body)
    assert response.status_code == 401 and error_code(response) == "missing_token"


def test_plain_user_cannot_probe_other_logins(client, signed_in):
    for login in ("root@example.com", "nobody@example.com", "not-a-login"):
        response = client.get(f"/users/{login}/roles", headers=signed_in)
        assert response.status_code == 403, login


# --- grants ---------------------------------------------------------------------------------------


def test_grant_list_and_revoke_roles(client, admin):
    ann = sign_up(client)
    sign_up(client, "+79991234567")
    editor = make_role(client, admin, "editor", ["files:write", "files:read"])
    auditor = make_role(client, admin, "auditor", ["files:read", "logs:read"])

    granted = client.post(f"/users/ANN@Example.com/roles/{editor['id']}", headers=admin)
    assert granted.status_code == 200
    assert granted.json == {"data": {"user": "ann@example.com", "role_id": editor["id"], "granted": True}, "error": None}
    assert client.post(f"/users/ann@example.com/roles/{editor['id']}", headers=admin).status_code == 200  # idempotent
    assert client.post(f"/users/ann@example.com/roles/{auditor['id']}", headers=admin).status_code == 200
    assert client.post(f"/users/+79991234567/roles/{auditor['id']}", headers=admin).status_code == 200

    own = client.get("/users/ann@example.com/roles", headers=bearer(ann["access_token"]))
    assert own.status_code == 200
    assert own.json["data"] == {
        "user": "ann@example.com",
        "superuser": False,
        "roles": [auditor, editor],
        "permissions": ["files:read", "files:write", "logs:read"],
    }
    assert client.get("/users/Ann@Example.com/roles", headers=admin).json["data"] == own.json["data"]
    phone = client.get("/users/8 999 123-45-67/roles", headers=admin).json["data"]
    assert phone["user"] == "+79991234567" and phone["roles"] == [auditor]

    revoked = client.delete(f"/users/ann@example.com/roles/{editor['id']}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json["data"] == {"user": "ann@example.com", "role_id": editor["id"], "granted": False}
    assert client.delete(f"/users/ann@example.com/roles/{editor['id']}", headers=admin).status_code == 200
    after = client.get("/users/ann@example.com/roles", headers=admin).json["data"]
    assert after["roles"] == [auditor] and after["permissions"] == ["files:read", "logs:read"]


def test_grants_to_unknown_user_or_role_are_404(client, admin):
    sign_up(client)
    role = make_role(client, admin)
    cases = [
        ("POST", f"/users/nobody@example.com/roles/{role['id']}"),
        ("DELETE", f"/users/nobody@example.com/roles/{role['id']}"),
        ("POST", f"/users/not-a-login/roles/{role['id']}"),
        ("POST", f"/users/ann@example.com/roles/{role['id'] + 1000}"),
        ("DELETE", f"/users/ann@example.com/roles/{role['id'] + 1000}"),
        ("GET", "/users/nobody@example.com/roles"),
        ("GET", "/users/not-a-login/roles"),
    ]
    for method, path in cases:
        response = client.open(path, method=method, headers=admin)
        assert response.status_code == 404 and error_code(response) == "not_found", path


def test_deleting_a_role_removes_its_grants(client, admin):
    ann = sign_up(client)
    role = make_role(client, admin, "editor", ["roles:manage"])
    client.post(f"/users/ann@example.com/roles/{role['id']}", headers=admin)
    assert client.get("/roles", headers=bearer(ann["access_token"])).status_code == 200

    assert client.delete(f"/roles/{role['id']}", headers=admin).status_code == 200
    assert client.get("/users/ann@example.com/roles", headers=admin).json["data"]["roles"] == []
    assert client.get("/roles", headers=bearer(ann["access_token"])).status_code == 403
    make_role(client, admin, "editor", ["roles:manage"])  # the name is free again, and nobody holds the new role
    assert client.get("/roles", headers=bearer(ann["access_token"])).status_code == 403


def test_revoked_permission_takes_effect_on_the_next_request(client, admin):
    ann = bearer(sign_up(client)["access_token"])
    managers = make_role(client, admin, "managers", ["roles:manage"])
    assert client.get("/roles", headers=ann).status_code == 403

    client.post(f"/users/ann@example.com/roles/{managers['id']}", headers=admin)
    assert client.get("/roles", headers=ann).status_code == 200  # the same token
    assert client.get("/users/root@example.com/roles", headers=ann).status_code == 200
    helper = client.post("/roles", json={"name": "helper", "permissions": []}, headers=ann)
    assert helper.status_code == 201

    client.delete(f"/users/ann@example.com/roles/{managers['id']}", headers=admin)
    assert client.get("/roles", headers=ann).status_code == 403

    client.post(f"/users/ann@example.com/roles/{managers['id']}", headers=admin)
    assert client.get("/roles", headers=ann).status_code == 200
    client.put(f"/roles/{managers['id']}", json={"permissions": ["files:read"]}, headers=admin)
    assert client.get("/roles", headers=ann).status_code == 403


def test_access_tokens_carry_role_names(client, admin):
    ann = sign_up(client)
    assert roles_claim(ann) == []
    for name in ("editor", "auditor"):
        role = make_role(client, admin, name, [])
        client.post(f"/users/ann@example.com/roles/{role['id']}", headers=admin)

    refreshed = client.post("/signin/new_token", json={"refresh_token": ann["refresh_token"]}).json["data"]
    assert roles_claim(refreshed) == ["auditor", "editor"]
    assert roles_claim(sign_in(client, "ann@example.com").json["data"]) == ["auditor", "editor"]
    assert roles_claim(sign_up(client, "bob@example.com")) == []
