"""Whose request it is (issue 9, "Trust no client header"), end to end in
the packaged nginx: signed identity tokens (valid, forged, tampered,
expired, replayed, within the clock skew, malformed, two secrets for
rotation), trusted proxies, auth_request, and what reaches the pod: the
identity header or cookie removed, a client's X-Pod-Router-Identity
dropped, the gateway's own X-Pod-Router-Identity added.

Tokens are minted and checked here with Python's hmac, hashlib and base64:
an implementation of the format independent of the core's
(docs/security.md)."""

import base64
import hashlib
import hmac
import http.client
import http.server
import json
import threading
import time

import pytest

from conftest import POD_NETWORK

SECRET_A = hashlib.sha256(b"the current secret").hexdigest().encode()
SECRET_B = hashlib.sha256(b"the next secret").hexdigest().encode()
SECRET_C = hashlib.sha256(b"a secret the gateway never saw").hexdigest().encode()
PASS_SECRET = hashlib.sha256(b"the secret the pods hold").hexdigest().encode()

IDENTITY_CONF = """
    pod_router_redis 127.0.0.1:{redis_port} connect_timeout=500ms timeout=1s;
    pod_router_amqp amqp://127.0.0.1:{amqp_port}/ timeout=2s;
    pod_router_recheck_interval 500ms;
    log_format pod_router '$pod_router_status $pod_router_pod $status';
    upstream pod_router_pods {{
        pod_router_balancer;
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        access_log {prefix}/access.log pod_router;
        pod_router_allow_cidr {pod_network}.0/24;
        pod_router_wait_timeout 10s;
        proxy_http_version 1.1;

        # Signed tokens in Authorization, two secrets (rotation), a short
        # skew, and a token of the gateway's own for the pod.
        location /signed/ {{
            pod_router on;
            pod_router_identity $http_authorization;
            pod_router_identity_secret {secrets}/a {secrets}/b;
            pod_router_identity_skew 2s;
            pod_router_pass_identity secret_file={secrets}/pass ttl=60s;
            proxy_set_header Connection "";
            proxy_set_header X-Token-Copy $pod_router_identity_token;
            proxy_pass http://pod_router_pods/;
        }}
        # The operator's own X-Pod-Router-Identity replaces the gateway's.
        location /replaced/ {{
            pod_router on;
            pod_router_identity $http_authorization;
            pod_router_identity_secret {secrets}/a;
            pod_router_pass_identity secret_file={secrets}/pass;
            proxy_set_header X-Pod-Router-Identity "operator:$pod_router_pod";
            proxy_pass http://pod_router_pods/;
        }}
        # A token in a header of its own, the default skew (30 s).
        location /header/ {{
            pod_router on;
            pod_router_identity $http_x_pod_router_token;
            pod_router_identity_secret {secrets}/a;
            proxy_pass http://pod_router_pods/;
        }}
        location /cookie/ {{
            pod_router on;
            pod_router_identity $cookie_pod_router_token;
            pod_router_identity_secret {secrets}/a;
            proxy_pass http://pod_router_pods/;
        }}
        # The trusted-header mode, behind a proxy at 127.0.0.1 only.
        location /trusted/ {{
            pod_router on;
            pod_router_identity $http_x_user_id;
            pod_router_trusted_proxies 127.0.0.1 ::1;
            proxy_pass http://pod_router_pods/;
        }}
        location /keep/ {{
            pod_router on;
            pod_router_identity $http_x_user_id;
            pod_router_strip_identity off;
            proxy_pass http://pod_router_pods/;
        }}
        # auth_request: the identity is what the auth service says.
        location /auth/ {{
            auth_request /_auth;
            auth_request_set $pod_router_user $upstream_http_x_user;
            pod_router on;
            pod_router_identity $pod_router_user;
            proxy_pass http://pod_router_pods/;
        }}
        location = /_auth {{
            internal;
            proxy_pass http://127.0.0.1:{auth_port}/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location = /pod-router/metrics {{
            pod_router_status;
        }}
    }}
"""


# -- the token format, independently -----------------------------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(secret: bytes, signed_part: str) -> str:
    return f"{signed_part}.{b64(hmac.new(secret, signed_part.encode(), hashlib.sha256).digest())}"


def mint(identity, secret=SECRET_A, ttl=300, expiry=None, version="v1"):
    if isinstance(identity, str):
        identity = identity.encode()
    expiry = int(time.time()) + ttl if expiry is None else expiry
    return sign(secret, f"{version}.{b64(identity)}.{expiry}")


def verify(secret: bytes, token: str):
    """(identity, expiry) of a genuine token; AssertionError otherwise."""
    version, identity, expiry, mac = token.split(".")
    assert version == "v1" and expiry.isdigit()
    expected = hmac.new(secret, f"{version}.{identity}.{expiry}".encode(), hashlib.sha256).digest()
    assert hmac.compare_digest(unb64(mac), expected), "the MAC does not verify"
    return unb64(identity).decode(), int(expiry)


# -- helpers -------------------------------------------------------------------

def request(gateway, path, headers=None, source="127.0.0.1"):
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30,
                                            source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers or {})
        reply = connection.getresponse()
        return reply.status, {name.lower(): value for name, value in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def seen_by_pod(gateway, path, headers=None):
    """The request headers the pod received (the demo pod's /headers)."""
    status, reply_headers, body = request(gateway, path + "headers", headers)
    assert status == 200, body
    return reply_headers["x-pod-name"], json.loads(body)


def ready(driver, pods, identity, last_octet):
    pod, ip = f"user-{identity}", f"{POD_NETWORK}.{last_octet}"
    if pod not in pods.pods():
        pods.add_pod(pod, ip, 80)
    assert driver.mark_ready(identity, pod, ip) == "ok"
    return pod


def metrics(gateway):
    return request(gateway, "/pod-router/metrics")[2].decode()


def assert_invalid_token(reply, reason):
    status, headers, body = reply
    assert status == 401, body
    assert headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert headers["content-type"] == "text/plain"
    assert body == f"pod-router: {reason}\n".encode()


class AuthService:
    """The stub behind auth_request: 200 with X-User for a known
    credential, 401 for anything else."""

    USERS = {"Token open-sesame-uma": "uma"}

    def __init__(self):
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                service.calls += 1
                user = service.USERS.get(self.headers.get("Authorization", ""))
                self.send_response(200 if user else 401)
                if user:
                    self.send_header("X-User", user)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.calls = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def auth_service():
    service = AuthService()
    yield service
    service.stop()


@pytest.fixture
def identity_gateway(gateway, tmp_path, redis_server, rabbitmq, driver, auth_service):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # One trailing newline is not part of a secret (echo writes one).
    (secrets / "a").write_bytes(SECRET_A + b"\n")
    (secrets / "b").write_bytes(SECRET_B)
    (secrets / "pass").write_bytes(PASS_SECRET + b"\n")
    gateway.write_conf(IDENTITY_CONF.format(
        redis_port=redis_server.port, amqp_port=rabbitmq.port, port=gateway.port,
        prefix=gateway.prefix, pod_network=POD_NETWORK, secrets=secrets,
        auth_port=auth_service.port))
    result = gateway.test_config()
    assert result.returncode == 0, result.stderr
    gateway.start()
    return gateway


# -- signed tokens ---------------------------------------------------------------

def test_a_valid_token_routes_to_its_identity_pod(identity_gateway, driver, pods):
    ready(driver, pods, "ivy", 101)
    ready(driver, pods, "jack", 102)
    for user in ("ivy", "jack"):
        status, headers, _ = request(identity_gateway, "/signed/", bearer(mint(user)))
        assert status == 200 and headers["x-pod-name"] == f"user-{user}"
    # the scheme is case-insensitive; the token alone will do as well
    assert request(identity_gateway, "/signed/", {"Authorization": "bearer " + mint("ivy")})[1][
        "x-pod-name"] == "user-ivy"
    assert request(identity_gateway, "/signed/", {"Authorization": mint("ivy")})[1][
        "x-pod-name"] == "user-ivy"
    # in a header or a cookie of its own
    assert request(identity_gateway, "/header/", {"X-Pod-Router-Token": mint("jack")})[1][
        "x-pod-name"] == "user-jack"
    assert request(identity_gateway, "/cookie/", {"Cookie": f"pod_router_token={mint('jack')}"})[1][
        "x-pod-name"] == "user-jack"


def test_forged_and_tampered_tokens_are_refused(identity_gateway, driver, pods):
    ready(driver, pods, "kate", 103)
    # signed with a secret the gateway does not hold
    assert_invalid_token(request(identity_gateway, "/signed/", bearer(mint("kate", SECRET_C))),
                         "invalid token signature")
    # another identity under a genuine token's MAC
    version, _, expiry, mac = mint("leo").split(".")
    tampered = f"{version}.{b64(b'kate')}.{expiry}.{mac}"
    assert_invalid_token(request(identity_gateway, "/signed/", bearer(tampered)),
                         "invalid token signature")
    # a later expiry under the same MAC
    version, identity, expiry, mac = mint("kate").split(".")
    extended = f"{version}.{identity}.{int(expiry) + 86400}.{mac}"
    assert_invalid_token(request(identity_gateway, "/signed/", bearer(extended)),
                         "invalid token signature")
    # nothing of them was routed, nor their text logged
    assert driver.events(timeout=0.3) == []
    log = identity_gateway.error_log()
    assert "identity token refused: forged" in log
    assert tampered not in log and mac not in log


def test_rotation_accepts_either_secret_and_no_third(identity_gateway, driver, pods):
    ready(driver, pods, "mona", 104)
    for secret in (SECRET_A, SECRET_B):
        status, headers, _ = request(identity_gateway, "/signed/", bearer(mint("mona", secret)))
        assert status == 200 and headers["x-pod-name"] == "user-mona"
    assert_invalid_token(request(identity_gateway, "/signed/", bearer(mint("mona", SECRET_C))),
                         "invalid token signature")
    # the secret as its file holds it, newline included, is another secret
    assert_invalid_token(request(identity_gateway, "/signed/", bearer(mint("mona", SECRET_A + b"\n"))),
                         "invalid token signature")


def test_expired_tokens_are_refused_and_the_skew_is_allowed(identity_gateway, driver, pods):
    ready(driver, pods, "nora", 105)
    assert_invalid_token(request(identity_gateway, "/signed/", bearer(mint("nora", ttl=-3600))),
                         "expired token")
    # /header/ allows the default 30 s of clock skew past the expiry
    status, headers, _ = request(identity_gateway, "/header/", {"X-Pod-Router-Token": mint("nora", ttl=-10)})
    assert status == 200 and headers["x-pod-name"] == "user-nora"
    assert_invalid_token(request(identity_gateway, "/header/", {"X-Pod-Router-Token": mint("nora", ttl=-40)}),
                         "expired token")


def test_a_token_replayed_after_its_expiry_is_refused(identity_gateway, driver, pods):
    ready(driver, pods, "omar", 106)
    token = mint("omar", ttl=1)
    status, headers, _ = request(identity_gateway, "/signed/", bearer(token))
    assert status == 200 and headers["x-pod-name"] == "user-omar"
    expiry = int(token.split(".")[2])
    # /signed/ allows 2 s of skew; nginx's clock ticks at least once a second
    time.sleep(max(0.0, expiry + 2 + 1.5 - time.time()))
    assert_invalid_token(request(identity_gateway, "/signed/", bearer(token)), "expired token")


def malformed_tokens():
    expiry = int(time.time()) + 300
    return {
        "garbage": "not-a-token",
        "bearer alone": "",
        "wrong version": sign(SECRET_A, f"v2.{b64(b'pia')}.{expiry}"),
        "no version": sign(SECRET_A, f"{b64(b'pia')}.{expiry}"),
        "five parts": sign(SECRET_A, f"v1.{b64(b'pia')}.{expiry}") + ".x",
        "bad base64": sign(SECRET_A, f"v1.p!a.{expiry}"),
        "padded base64": sign(SECRET_A, f"v1.{b64(b'pia1')}==.{expiry}"),
        "non-digit expiry": sign(SECRET_A, f"v1.{b64(b'pia')}.12a4"),
        "signed expiry": sign(SECRET_A, f"v1.{b64(b'pia')}.+{expiry}"),
        "empty identity": sign(SECRET_A, f"v1..{expiry}"),
        "short MAC": f"v1.{b64(b'pia')}.{expiry}.{b64(b'x' * 16)}",
        "oversized": mint(b"p" * 4500),
    }


def test_malformed_tokens_are_refused(identity_gateway, driver, pods):
    ready(driver, pods, "pia", 107)
    tokens = malformed_tokens()
    for case, token in tokens.items():
        reply = request(identity_gateway, "/signed/", {"Authorization": f"Bearer {token}"})
        try:
            assert_invalid_token(reply, "malformed token")
        except AssertionError as error:
            raise AssertionError(f"{case}: {reply}") from error
    assert driver.events(timeout=0.3) == []
    text = metrics(identity_gateway)
    assert f'pod_router_identity_rejected_total{{reason="malformed"}} {len(tokens)}' in text
    assert f'pod_router_requests_total{{outcome="invalid_token"}} {len(tokens)}' in text


def test_no_token_is_the_missing_identity_status(identity_gateway):
    status, headers, _ = request(identity_gateway, "/signed/")
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert request(identity_gateway, "/cookie/", {"Cookie": "other=1"})[0] == 401


def test_each_reason_has_its_counter(identity_gateway, driver, pods):
    request(identity_gateway, "/signed/")
    request(identity_gateway, "/signed/", bearer("garbage"))
    request(identity_gateway, "/signed/", bearer(mint("quinn", SECRET_C)))
    request(identity_gateway, "/signed/", bearer(mint("quinn", SECRET_C)))
    request(identity_gateway, "/signed/", bearer(mint("quinn", ttl=-3600)))
    request(identity_gateway, "/trusted/", {"X-User-ID": "quinn"}, source="127.0.0.2")
    text = metrics(identity_gateway)
    for reason, count in (("missing", 1), ("malformed", 1), ("forged", 2), ("expired", 1),
                          ("untrusted_address", 1)):
        assert f'pod_router_identity_rejected_total{{reason="{reason}"}} {count}\n' in text, text
    assert "# TYPE pod_router_identity_rejected_total counter" in text
    # the six requests and the metrics request: each worker logs after it
    # answers, so wait for all seven lines rather than the first six
    statuses = [line.split()[0] for line in identity_gateway.access_log(7)]
    assert statuses.count("INVALID_TOKEN") == 4 and statuses.count("UNTRUSTED_ADDRESS") == 1
    assert statuses.count("NO_IDENTITY") == 1 and len(statuses) == 7


# -- trusted proxies and auth_request --------------------------------------------

def test_trusted_proxies_refuse_other_addresses(identity_gateway, driver, pods):
    ready(driver, pods, "rosa", 108)
    status, headers, _ = request(identity_gateway, "/trusted/", {"X-User-ID": "rosa"})
    assert status == 200 and headers["x-pod-name"] == "user-rosa"
    # the same request from another address: refused before the identity is read
    for identity in ({"X-User-ID": "rosa"}, {}):
        status, _, body = request(identity_gateway, "/trusted/", identity, source="127.0.0.2")
        assert status == 403 and body == b"pod-router: identity not accepted from this address\n"
    assert driver.events(timeout=0.3) == []


def test_auth_request_decides_the_identity(identity_gateway, driver, pods, auth_service):
    ready(driver, pods, "uma", 109)
    status, headers, _ = request(identity_gateway, "/auth/", {"Authorization": "Token open-sesame-uma"})
    assert status == 200 and headers["x-pod-name"] == "user-uma"
    assert request(identity_gateway, "/auth/", {"Authorization": "Token wrong"})[0] == 401
    assert request(identity_gateway, "/auth/")[0] == 401
    # a client's own X-User means nothing here
    assert request(identity_gateway, "/auth/", {"X-User": "uma"})[0] == 401
    assert auth_service.calls == 4
    assert driver.events(timeout=0.3) == []


# -- what reaches the pod ------------------------------------------------------------

def test_the_identity_header_and_a_clients_identity_header_never_reach_the_pod(identity_gateway, driver, pods):
    ready(driver, pods, "sam", 110)
    forged = mint("someone-else", PASS_SECRET)
    pod, seen = seen_by_pod(identity_gateway, "/trusted/",
                            {"X-User-ID": "sam", "X-Pod-Router-Identity": forged, "X-Other": "kept"})
    assert pod == "user-sam"
    assert "x-user-id" not in seen and "x-pod-router-identity" not in seen
    assert seen["x-other"] == "kept"

    pod, seen = seen_by_pod(identity_gateway, "/header/",
                            {"X-Pod-Router-Token": mint("sam"), "X-Pod-Router-Identity": forged})
    assert pod == "user-sam" and "x-pod-router-token" not in seen and "x-pod-router-identity" not in seen

    # Authorization, in the mode that reads it
    pod, seen = seen_by_pod(identity_gateway, "/signed/", bearer(mint("sam")))
    assert pod == "user-sam" and "authorization" not in seen

    # a pod written for the seed trusts X-User-ID: a client's own never
    # gets past an identity read from elsewhere
    pod, seen = seen_by_pod(identity_gateway, "/signed/", {**bearer(mint("sam")), "X-User-ID": "admin"})
    assert pod == "user-sam" and "x-user-id" not in seen and "authorization" not in seen
    pod, seen = seen_by_pod(identity_gateway, "/header/",
                            {"X-Pod-Router-Token": mint("sam"), "X-User-ID": "admin", "X-Other": "kept"})
    assert pod == "user-sam" and "x-user-id" not in seen and seen["x-other"] == "kept"

    # pod_router_strip_identity off keeps the header, never a client's X-Pod-Router-Identity
    pod, seen = seen_by_pod(identity_gateway, "/keep/", {"X-User-ID": "sam", "X-Pod-Router-Identity": forged})
    assert seen["x-user-id"] == "sam" and "x-pod-router-identity" not in seen


def test_the_identity_cookie_is_removed_and_the_others_kept(identity_gateway, driver, pods):
    ready(driver, pods, "tess", 111)
    token = mint("tess")
    _, seen = seen_by_pod(identity_gateway, "/cookie/",
                          {"Cookie": f"theme=dark; pod_router_token={token};lang=en"})
    assert seen["cookie"] == "theme=dark; lang=en"
    # in any case and spacing nginx would read it in; every copy of it
    _, seen = seen_by_pod(identity_gateway, "/cookie/",
                          {"Cookie": f"POD_ROUTER_TOKEN ={token}; a=1; pod_router_token={token}"})
    assert seen["cookie"] == "a=1"
    # a cookie whose name only begins the same way is someone else's
    _, seen = seen_by_pod(identity_gateway, "/cookie/",
                          {"Cookie": f"pod_router_token={token}; pod_router_token_hint=x"})
    assert seen["cookie"] == "pod_router_token_hint=x"
    # nothing left: no Cookie header at all
    _, seen = seen_by_pod(identity_gateway, "/cookie/", {"Cookie": f"pod_router_token={token}"})
    assert "cookie" not in seen


def test_the_pod_gets_a_token_for_exactly_its_user(identity_gateway, driver, pods):
    ready(driver, pods, "uri", 112)
    client_claim = mint("victim", PASS_SECRET)
    before = int(time.time())
    pod, seen = seen_by_pod(identity_gateway, "/signed/",
                            {"Authorization": f"Bearer {mint('uri', SECRET_B)}",
                             "X-Pod-Router-Identity": client_claim})
    after = int(time.time())
    assert pod == "user-uri"
    token = seen["x-pod-router-identity"]
    assert token != client_claim
    identity, expiry = verify(PASS_SECRET, token)
    assert identity == "uri"
    assert before + 60 - 1 <= expiry <= after + 60 + 1  # ttl=60s
    # signed with its own secret, not the one users' tokens are signed with
    with pytest.raises(AssertionError):
        verify(SECRET_A, token)
    # $pod_router_identity_token is the same token
    assert seen["x-token-copy"] == token

    # proxy_set_header X-Pod-Router-Identity takes its place: one header
    _, seen = seen_by_pod(identity_gateway, "/replaced/", bearer(mint("uri")))
    assert seen["x-pod-router-identity"] == "operator:user-uri"

    # without pod_router_pass_identity, no token
    _, seen = seen_by_pod(identity_gateway, "/header/", {"X-Pod-Router-Token": mint("uri")})
    assert "x-pod-router-identity" not in seen


def test_a_dead_pod_recovers_with_the_identity_the_client_sent(gateway, tmp_path, redis_server, rabbitmq,
                                                               driver, pods):
    # error_page to a named location runs pod_router again: it must find the
    # identity header where the client put it, although the first pass
    # removed it, and remove it (and add the pod's token) once more.
    secret = tmp_path / "pass-secret"
    secret.write_bytes(PASS_SECRET)
    gateway.configure(redis_server, rabbitmq, location_extra="error_page 502 = @pod_router_recover;",
                      extra_http=f"pod_router_pass_identity secret_file={secret};").start()
    old_ip = f"{POD_NETWORK}.113"
    pods.add_pod("user-vera", old_ip, 80)
    driver.mark_ready("vera", "user-vera", old_ip)
    assert request(gateway, "/", {"X-User-ID": "vera"})[0] == 200
    pods.remove_pod("user-vera")  # the pod dies

    result = {}
    client = threading.Thread(target=lambda: result.update(reply=request(
        gateway, "/headers", {"X-User-ID": "vera", "X-Pod-Router-Identity": "forged"})))
    client.start()
    events = driver.events(timeout=10, expect=1)
    assert [event["identity"] for event, _ in events] == ["vera"]
    new_ip = f"{POD_NETWORK}.114"
    pods.add_pod("user-vera", new_ip, 80)
    driver.mark_ready("vera", "user-vera", new_ip)
    client.join(30)
    status, headers, body = result["reply"]
    assert status == 200 and headers["x-pod-name"] == "user-vera"
    seen = json.loads(body)
    assert "x-user-id" not in seen
    assert verify(PASS_SECRET, seen["x-pod-router-identity"])[0] == "vera"
