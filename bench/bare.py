"""The baseline for bench/ingress.py: a Starlette endpoint that only reads the body."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def webhook(request: Request) -> Response:
    await request.body()
    return Response(b'{"received":true}', media_type="application/json")


app = Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])
