"""The identity directives at `nginx -t`: secrets read from their files when
nginx reads its configuration, and every mistake refused with nginx's
usual message naming the file and line."""

import pytest

SECRET = b"0123456789abcdef" * 4  # 64 bytes


@pytest.fixture
def secrets(tmp_path):
    folder = tmp_path / "secrets"
    folder.mkdir()
    (folder / "current").write_bytes(SECRET + b"\n")
    (folder / "next").write_bytes(SECRET[::-1])
    (folder / "third").write_bytes(SECRET.upper())
    (folder / "short").write_bytes(b"x" * 31 + b"\n")  # 31 bytes once the newline goes
    (folder / "huge").write_bytes(b"x" * 5000)
    folder.chmod(0o755)
    return folder


def conf(nginx, location):
    return f"server {{ listen 127.0.0.1:{nginx.port};\n location / {{\n{location}\n}} }}"


def test_identity_directives_accept_valid_values(nginx, secrets):
    nginx.write_conf(
        f"pod_router_identity_secret {secrets}/current {secrets}/next;\n"
        "pod_router_identity_skew 1m;\n"
        f"pod_router_pass_identity secret_file={secrets}/third ttl=5m;\n"
        + conf(nginx, "pod_router_identity $http_authorization;\n"
                      "pod_router_strip_identity off;\n"
                      "pod_router_trusted_proxies 10.0.0.0/8 127.0.0.1 ::1 fd00::/8;\n"
                      "pod_router_pass_identity off;\n"
                      "return 200 $pod_router_identity_token;")
    )
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("line, message", [
    ("pod_router_identity_secret {secrets}/missing;",
     'open() "{secrets}/missing" failed (2: No such file or directory)'),
    ("pod_router_identity_secret {secrets}/short;",
     'invalid value "{secrets}/short" in "pod_router_identity_secret" directive: '
     "an identity secret must hold at least 32 bytes"),
    ("pod_router_identity_secret {secrets}/current {secrets}/short;",
     'invalid value "{secrets}/short" in "pod_router_identity_secret" directive'),
    ("pod_router_identity_secret {secrets}/current {secrets}/next {secrets}/third;",
     'invalid number of arguments in "pod_router_identity_secret" directive'),
    ("pod_router_identity_secret {secrets};",
     '"{secrets}" is not a file'),
    ("pod_router_identity_secret {secrets}/huge;",
     '"{secrets}/huge" holds more than 4096 bytes'),
    ("pod_router_identity_secret {secrets}/current; pod_router_identity_secret {secrets}/next;",
     '"pod_router_identity_secret" directive is duplicate'),
    ("pod_router_identity_skew soon;",
     '"pod_router_identity_skew" directive invalid value'),
    ("pod_router_trusted_proxies 10.0.0.0/8 300.1.2.3;",
     'invalid value "300.1.2.3" in "pod_router_trusted_proxies" directive: '
     "expected an address or a CIDR block"),
    ("pod_router_strip_identity maybe;",
     'invalid value "maybe" in "pod_router_strip_identity" directive, it must be "on" or "off"'),
    ("pod_router_pass_identity ttl=60s;",
     '"pod_router_pass_identity" needs secret_file='),
    ("pod_router_pass_identity secret_file={secrets}/current ttl=never;",
     'invalid parameter "ttl=never" in "pod_router_pass_identity" directive'),
    ("pod_router_pass_identity secret_file={secrets}/current ttl=0;",
     'invalid parameter "ttl=0" in "pod_router_pass_identity" directive'),
    ("pod_router_pass_identity secret_file={secrets}/short;",
     'invalid value "{secrets}/short" in "pod_router_pass_identity" directive'),
])
def test_bad_identity_settings_fail_nginx_t(nginx, secrets, line, message):
    nginx.write_conf(line.format(secrets=secrets) + "\n" + conf(nginx, "return 200;"))
    result = nginx.test_config()
    assert result.returncode != 0
    assert message.format(secrets=secrets) in result.stderr, result.stderr
    assert "nginx.conf:" in result.stderr  # the line, as nginx names it
