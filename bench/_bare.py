"""A bare Starlette endpoint with the service's JSON response: the ceiling the service is compared to."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def post(request: Request) -> Response:
    await request.body()
    return Response(b'{"data":true}', media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"data":"ok"}', media_type="application/json")


app = Starlette(routes=[Route("/webhooks/bounce", post, methods=["POST"]), Route("/healthz", healthz)])
