"""Case e: the seed's Session Gateway, re-created from its README for make
bench. FastAPI under uvicorn: per request it checks Redis for the user's
session and, when it is ready, proxies to the pod with httpx; it records the
user's activity for the reaper, as the seed's 10-minute idle rule needs.
Connection pools to Redis and to the pods are kept per worker process.

It reads the session this project keeps in Redis (docs/redis-schema.md), so
it serves the same users as the other cases. A new user gets a 503: the
cold path is not part of this comparison.

    BENCH_REDIS_PORT=6379 python3 -m uvicorn seed_gateway:app --workers 2
"""

import os
import re
import time

import httpx
import redis.asyncio as redis
from fastapi import FastAPI, Request, Response

SAFE_IDENTITY = re.compile(r"^[a-z0-9-]+$")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade",
              "proxy-authenticate", "proxy-authorization", "te", "trailer"}

app = FastAPI()
state = {}


@app.on_event("startup")
async def connect():
    state["redis"] = redis.Redis(host="127.0.0.1", port=int(os.environ["BENCH_REDIS_PORT"]),
                                 socket_timeout=1.0, socket_connect_timeout=0.5)
    state["pods"] = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=1.0),
                                      limits=httpx.Limits(max_keepalive_connections=64))


@app.on_event("shutdown")
async def disconnect():
    await state["pods"].aclose()
    await state["redis"].close()


@app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
async def proxy(request: Request, path: str):
    identity = request.headers.get("x-user-id", "")
    if not identity:
        return Response("missing X-User-ID\n", status_code=401)
    if not SAFE_IDENTITY.match(identity):
        return Response("bad X-User-ID\n", status_code=400)
    pod = "user-" + identity
    session_state, ip, port = await state["redis"].hmget(
        "pod-router:session:" + pod, "state", "ip", "port")
    if session_state != b"ready":
        return Response("no pod yet\n", status_code=503)
    await state["redis"].zadd("pod-router:activity", {pod: int(time.time() * 1000)})
    upstream = await state["pods"].request(
        request.method, f"http://{ip.decode()}:{port.decode()}/{path}",
        headers=[(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}],
        content=await request.body())
    headers = {k: v for k, v in upstream.headers.items()
               if k.lower() not in HOP_BY_HOP | {"content-length", "content-encoding"}}
    return Response(upstream.content, status_code=upstream.status_code, headers=headers)
