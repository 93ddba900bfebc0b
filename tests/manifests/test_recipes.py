"""The configuration the manifests carry, run for real on this machine: the
gateway's nginx configuration with the built module (both gateways), the
controller's settings against its own flags, Redis's password recipe with a
real redis-server, RabbitMQ's credentials recipe. Cluster paths and names
become local ones; nothing else changes."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pika
import pytest
import redis

from conftest import REPO, helm_values

sys.path.insert(0, str(REPO / "tests" / "support"))

from nginx_runner import MODULE, NGINX  # noqa: E402 (needs the path above)
from servers import RabbitMQ, free_port  # noqa: E402
from polling import wait_until  # noqa: E402

CONTROLLER = os.environ.get("POD_ROUTER_CONTROLLER",
                            str(REPO / "build" / "controller" / "pod-router-controller"))


def localize(text, root):
    """Cluster paths and Service names to their stand-ins under root."""
    text = re.sub(r"(?<![\w/.-])(/etc/pod-router/|/tmp/)", lambda m: f"{root}{m.group(1)}", text)
    return re.sub(r"\b(redis|rabbitmq)\.pod-router-system\.svc\b", "127.0.0.1", text)


def config_map(rendering, namespace, name):
    """A ConfigMap by its name before kustomize's hash suffix."""
    (found,) = [c for c in rendering.of_kind("ConfigMap") if c["metadata"]["namespace"] == namespace
                and re.fullmatch(re.escape(name) + r"(-[a-z0-9]{10})?", c["metadata"]["name"])]
    return found


def mount_gateway_files(rendering, namespace, root):
    """What the gateway pods see under /etc/pod-router, from the rendering."""
    etc = root / "etc" / "pod-router"
    (etc / "secrets").mkdir(parents=True)
    (root / "tmp").mkdir()
    names = ["pod-router-gateway"] + (["pod-router-nginx"] if namespace == "pod-router-system" else [])
    for name in names:
        for key, value in config_map(rendering, namespace, name)["data"].items():
            (etc / key).write_text(localize(value, root))
    for path in ("redis-password", "amqp-credentials", "identity-secret"):
        (etc / "secrets" / path).write_text((rendering.secrets_dir / path).read_text())
    return etc


def nginx_t(conf):
    if not MODULE or not Path(MODULE).is_file():
        pytest.fail(f"POD_ROUTER_MODULE does not name the built module: {MODULE!r}")
    return subprocess.run([NGINX, "-t", "-p", str(conf.parent), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)


def test_the_ingress_nginx_snippets_pass_nginx_t(renderings, tmp_path):
    rendering = renderings["eks"]
    mount_gateway_files(rendering, "ingress-nginx", tmp_path)
    config = helm_values()["controller"]["config"]
    main = re.sub(r"load_module \S+;", f"load_module {MODULE};", config["main-snippet"])
    # the least of ingress-nginx's own nginx.conf around the two snippets
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""{main}
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {tmp_path}/tmp/client_body;
    proxy_temp_path {tmp_path}/tmp/proxy;
    fastcgi_temp_path {tmp_path}/tmp/fastcgi;
    uwsgi_temp_path {tmp_path}/tmp/uwsgi;
    scgi_temp_path {tmp_path}/tmp/scgi;
{localize(config["http-snippet"], tmp_path)}
}}
""")
    done = nginx_t(conf)
    assert done.returncode == 0, done.stderr
    # and the EKS overlay's pod network is the one in force
    assert "192.168.0.0/16" in (tmp_path / "etc" / "pod-router" / "cluster.conf").read_text()


def test_the_plain_nginx_gateway_passes_nginx_t(renderings, tmp_path):
    etc = mount_gateway_files(renderings["plain-nginx"], "pod-router-system", tmp_path)
    conf = etc / "nginx.conf"
    conf.write_text(re.sub(r"load_module \S+;", f"load_module {MODULE};", conf.read_text()))
    done = nginx_t(conf)
    assert done.returncode == 0, done.stderr


def test_a_wrong_gateway_conf_fails_nginx_t(renderings, tmp_path):
    """The two tests above can fail: a typo in gateway.conf is caught."""
    etc = mount_gateway_files(renderings["plain-nginx"], "pod-router-system", tmp_path)
    gateway = etc / "gateway.conf"
    gateway.write_text(gateway.read_text().replace("pod_router_touch_interval", "pod_router_touch_intervl"))
    conf = etc / "nginx.conf"
    conf.write_text(re.sub(r"load_module \S+;", f"load_module {MODULE};", conf.read_text()))
    done = nginx_t(conf)
    assert done.returncode != 0 and "pod_router_touch_intervl" in done.stderr


def test_the_controller_settings_are_its_flags_and_name_mounted_files(renderings):
    rendering = renderings["eks"]
    text = config_map(rendering, "pod-router-system", "pod-router-controller")["data"]["controller.toml"]
    pairs = dict(re.findall(r'^([a-z-]+) = "([^"]*)"$', text, re.M))
    assert pairs, text
    flags = set(re.findall(r"--([a-z][a-z-]+)", subprocess.run(
        [CONTROLLER, "run", "--help"], capture_output=True, text=True, check=True).stdout))
    assert set(pairs) <= flags, set(pairs) - flags
    deployment = rendering.find("Deployment", "pod-router-system", "pod-router-controller")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (mount,) = container["volumeMounts"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    mounted = {f"{mount['mountPath']}/{item['path']}" for source in volume["projected"]["sources"]
               for kind in source.values() for item in kind["items"]}
    assert f"{mount['mountPath']}/controller.toml" in mounted
    assert container["args"] == ["run", "--config", f"{mount['mountPath']}/controller.toml"]
    for key in ("pod-template", "redis-password-file", "amqp-credentials-file"):
        assert pairs[key] in mounted, key
    assert int(pairs["listen"].rsplit(":", 1)[1]) == container["ports"][0]["containerPort"]


def init_script(statefulset):
    (init,) = statefulset["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["sh", "-ec"]
    return init["command"][2]


def test_redis_takes_its_password_from_the_secret_file(renderings, tmp_path):
    rendering = renderings["minikube"]
    statefulset = rendering.find("StatefulSet", "pod-router-system", "redis")
    password = (rendering.secrets_dir / "redis-password").read_text().strip()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "password").write_text(password + "\n")
    (tmp_path / "acl").mkdir()
    (tmp_path / "data").mkdir()
    script = init_script(statefulset).replace("/etc/redis-secret", str(tmp_path / "secret")) \
        .replace("/run/redis", str(tmp_path / "acl"))
    subprocess.run(["sh", "-ec", script], check=True, timeout=10)
    assert (tmp_path / "acl" / "users.acl").stat().st_mode & 0o077 == 0
    conf = config_map(rendering, "pod-router-system", "redis")["data"]["redis.conf"]
    port = free_port()
    conf = conf.replace("dir /data", f"dir {tmp_path / 'data'}") \
        .replace("/run/redis", str(tmp_path / "acl")).replace("port 6379", f"port {port}") \
        .replace("bind * -::*", "bind 127.0.0.1")
    (tmp_path / "redis.conf").write_text(conf)
    server = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers(client):
            try:
                return client.ping()
            except redis.exceptions.ConnectionError:
                return False
        authenticated = redis.Redis(port=port, password=password)
        wait_until(lambda: answers(authenticated), what="redis-server with the manifests' config")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port).get("anything")
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGPASS"):
            redis.Redis(port=port, password="not-" + password).ping()
        assert authenticated.config_get("appendonly") == {"appendonly": "yes"}
        assert authenticated.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        # the password is nowhere in the process list
        listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert password not in listing
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("line, ok", [("pod-router:s3cret:with:colons\n", True),
                                      ("no-colon\n", False), (":empty-user\n", False),
                                      ("user:\n", False), ("", False)])
def test_rabbitmq_takes_its_user_from_the_secret_file(renderings, line, ok):
    statefulset = renderings["minikube"].find("StatefulSet", "pod-router-system", "rabbitmq")
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for sub in ("secret", "config", "conf.d"):
            (root / sub).mkdir()
        (root / "secret" / "credentials").write_text(line)
        (root / "config" / "rabbitmq.conf").write_text("listeners.tcp.default = 5672\n")
        script = init_script(statefulset).replace("/etc/rabbitmq-secret", str(root / "secret")) \
            .replace("/etc/rabbitmq-config", str(root / "config")) \
            .replace("/etc/rabbitmq/conf.d", str(root / "conf.d"))
        done = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=10)
        assert (done.returncode == 0) == ok, done.stderr
        if ok:
            written = (root / "conf.d" / "20-credentials.conf").read_text()
            assert written == "default_user = pod-router\ndefault_pass = s3cret:with:colons\n"
            assert (root / "conf.d" / "10-pod-router.conf").is_file()
        else:
            assert "user:password" in done.stderr


def test_rabbitmq_runs_with_the_manifests_config_and_credentials(renderings):
    """A real rabbitmq-server (Debian's) with the ConfigMap's rabbitmq.conf
    and the init container's credentials: the Secret's user gets in, guest
    does not. Only the listener is moved to a free local port."""
    rendering = renderings["minikube"]
    statefulset = rendering.find("StatefulSet", "pod-router-system", "rabbitmq")
    user, password = (rendering.secrets_dir / "amqp-credentials").read_text().strip().split(":", 1)
    # rabbitmq-server runs as the rabbitmq user: its folder must be reachable
    directory = Path(tempfile.mkdtemp(prefix="pod-router-manifests-"))
    directory.chmod(0o755)
    broker = None
    try:
        (directory / "secret").mkdir()
        (directory / "secret" / "credentials").write_text(f"{user}:{password}\n")
        (directory / "config").mkdir()
        (directory / "config" / "rabbitmq.conf").write_text(
            config_map(rendering, "pod-router-system", "rabbitmq")["data"]["rabbitmq.conf"])
        (directory / "conf.d").mkdir()
        script = init_script(statefulset).replace("/etc/rabbitmq-secret", str(directory / "secret")) \
            .replace("/etc/rabbitmq-config", str(directory / "config")) \
            .replace("/etc/rabbitmq/conf.d", str(directory / "conf.d"))
        subprocess.run(["sh", "-ec", script], check=True, timeout=10)
        conf = "".join(f.read_text() for f in sorted((directory / "conf.d").iterdir()))
        node = directory / "node"
        node.mkdir()

        class Configured(RabbitMQ):
            def start(self):
                # scripts/rabbitmq-node.sh reads DIR/rabbitmq.conf
                (node / "rabbitmq.conf").write_text(re.sub(
                    r"^listeners\.tcp\.default = .*$", f"listeners.tcp.default = 127.0.0.1:{self.port}",
                    conf, flags=re.M))
                super().start()

        broker = Configured(node)
        parameters = dict(host="127.0.0.1", port=broker.port, connection_attempts=1)
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            credentials=pika.PlainCredentials(user, password), **parameters))
        connection.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.ConnectionParameters(
                credentials=pika.PlainCredentials("guest", "guest"), **parameters))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_the_gateway_defaults_to_an_identity_no_client_can_forge(renderings):
    """Signed tokens (docs/security.md), not the seed's trusted X-User-ID."""
    for overlay in ("minikube", "eks", "plain-nginx"):
        rendering = renderings[overlay]
        namespace = "pod-router-system" if overlay == "plain-nginx" else "ingress-nginx"
        conf = config_map(rendering, namespace, "pod-router-gateway")["data"]["gateway.conf"]
        directives = [line.split("#")[0].strip() for line in conf.splitlines()]
        assert "pod_router_identity $http_authorization;" in directives
        assert "pod_router_identity_secret /etc/pod-router/secrets/identity-secret;" in directives
        assert not any("x_user_id" in d for d in directives)
