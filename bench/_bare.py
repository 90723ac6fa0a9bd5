"""A bare Starlette endpoint with the service's JSON response: the ceiling the service is compared to.

Its workers collect garbage as the service's do (bounce_service/collection.py), so that the comparison
is of the same server.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bounce_service.collection import tune_collection

tune_collection()


async def post(request: Request) -> Response:
    await request.body()
    return Response(b'{"data":true}', media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"data":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/webhooks/bounce", post, methods=["POST"]), Route("/healthz", healthz)])
