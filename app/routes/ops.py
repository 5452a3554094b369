"""GET /metrics (SPEC §12): Prometheus' text format, for the operator's scraper and no one else."""
from flask import Blueprint, Response

from app import metrics
from app.db import utcnow
from app.errors import InvalidToken, MissingToken, NotFound
from app.http.auth import metrics_allowed
from app.http.context import get_db
from app.openapi.operation import operation
from app.services.uploads import count_open

bp = Blueprint("ops", __name__)


@bp.get("/metrics")
@operation(
    "metrics", "service", "Prometheus metrics of every worker process", security=({"metricsToken": []},),
    errors=(NotFound, MissingToken, InvalidToken), responses={"200": {
        "description": "The Prometheus text exposition format (version 0.0.4).",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }},
    description=(
        "Served with `Authorization: Bearer <METRICS_TOKEN>`, or without a token on `127.0.0.1:<METRICS_PORT>` "
        "(which answers nothing else). With METRICS_TOKEN unset this port answers 404, exactly as for a route that "
        "does not exist; with it set, a missing or wrong token is 401. Metric names: README, \"Operations\"."
    ),
)
def scrape():
    metrics_allowed()
    body = metrics.exposition(uploads_open=count_open(get_db(), now=utcnow()))
    return Response(body, content_type=metrics.CONTENT_TYPE, headers={"Cache-Control": "no-store"})
