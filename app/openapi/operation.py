"""What a route declares about itself, once, beside its code: the OpenAPI document is read from these.

    @bp.get("/file/<int:file_id>")
    @operation("getFile", "files", "A file's metadata", returns=shapes.File, errors=(NotFound,))
    @token_required
    def metadata(file_id): ...

The method and path come from the URL map, path parameter types from its converters, security from
the auth decorator, the errors every such route can meet (token, body, database) from what it declares.
"""
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from pydantic import BaseModel

from app.db.models import ID_MAX
from app.errors import ApiError
from app.schemas.responses import Shape

F = TypeVar("F", bound=Callable[..., Any])

FILE_ID = f"<int(max={ID_MAX}):file_id>"  # the id column's range; anything else is simply not a route
FILE_ID_DOC = {"file_id": "The file's id; another user's file answers 404, exactly like a missing one."}


@dataclass(frozen=True)
class Operation:
    id: str
    tag: str
    summary: str
    returns: type[Shape] | None = None  # the success body's `data`; None: `responses` says it all
    status: int = 200
    errors: tuple[type[ApiError], ...] = ()  # besides the ones the route's kind implies
    body: type[BaseModel] | Mapping[str, Any] | None = None  # a model (JSON or form), or a whole requestBody
    body_required: bool = True
    form: bool = True  # False: a form cannot carry the model's types (a list may be empty); described in prose
    description: str = ""
    parameters: tuple[Mapping[str, Any], ...] = ()  # query, header and cookie parameters
    path_docs: Mapping[str, str] = field(default_factory=dict)  # path parameter → description
    responses: Mapping[str, Any] = field(default_factory=dict)  # responses that are not the JSON envelope
    links: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # OpenAPI links of the success
    security: tuple[Mapping[str, list], ...] | None = None  # None: from the auth decorator
    database: bool = True  # False: answers without the database (no 503 for it)


def operation(operation_id: str, tag: str, summary: str, **details: Any) -> Callable[[F], F]:
    """Attach the route's declaration to its view function."""

    def attach(view: F) -> F:
        view.operation = Operation(operation_id, tag, summary, **details)  # type: ignore[attr-defined]
        return view

    return attach


def link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link: `parameters` map the target's parameters to runtime expressions."""
    return {"operationId": operation_id, "description": description, "parameters": parameters}
