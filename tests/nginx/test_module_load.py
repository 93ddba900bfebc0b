"""The built module in the packaged nginx: loads, validates its directives
at `nginx -t` like nginx's own modules, and serves with nginx unharmed."""

import urllib.request

import pytest


def test_config_with_module_loaded_is_valid(nginx):
    nginx.write_conf(f"server {{ listen 127.0.0.1:{nginx.port}; }}")
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_directives_accept_valid_values(nginx):
    nginx.write_conf(
        "pod_router_pod_name_prefix sess;\n"
        "pod_router_max_identity_length 1k;\n"
        "pod_router_subscribe off;\n"
        f"server {{ listen 127.0.0.1:{nginx.port}; }}"
    )
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("line, message", [
    ("pod_router_pod_name_prefix Users--;",
     'invalid value "Users--" in "pod_router_pod_name_prefix" directive: '
     "pod name prefix must start with a lowercase letter"),
    ("pod_router_max_identity_length 5k;",
     '"pod_router_max_identity_length" must be between 1 and 4096 bytes'),
    ("pod_router_subscribe maybe;",
     'invalid value "maybe" in "pod_router_subscribe" directive, it must be "on" or "off"'),
])
def test_bad_values_fail_nginx_t_with_the_reason_and_line(nginx, line, message):
    nginx.write_conf(f"{line}\nserver {{ listen 127.0.0.1:{nginx.port}; }}")
    result = nginx.test_config()
    assert result.returncode != 0
    assert message in result.stderr
    assert "nginx.conf:" in result.stderr  # the line, as nginx names it


def test_duplicate_directive_is_refused(nginx):
    nginx.write_conf(
        "pod_router_pod_name_prefix a;\npod_router_pod_name_prefix b;\n"
        f"server {{ listen 127.0.0.1:{nginx.port}; }}"
    )
    result = nginx.test_config()
    assert result.returncode != 0
    assert '"pod_router_pod_name_prefix" directive is duplicate' in result.stderr


def test_directive_outside_http_is_refused(nginx):
    nginx.write_conf(
        f"server {{ listen 127.0.0.1:{nginx.port};"
        " location / { pod_router_pod_name_prefix a; } }"
    )
    result = nginx.test_config()
    assert result.returncode != 0
    assert '"pod_router_pod_name_prefix" directive is not allowed here' in result.stderr


def test_nginx_serves_and_stops_cleanly_with_the_module(nginx):
    nginx.write_conf(
        "pod_router_pod_name_prefix sess;\n"
        f"server {{ listen 127.0.0.1:{nginx.port};"
        ' location / { return 200 "alive\\n"; } }'
    )
    nginx.start()
    for _ in range(20):
        with urllib.request.urlopen(f"http://127.0.0.1:{nginx.port}/", timeout=5) as reply:
            assert reply.status == 200
            assert reply.read() == b"alive\n"
    assert nginx.stop() == 0
    log = nginx.error_log()
    for level in ("[emerg]", "[alert]", "[crit]", "[error]"):
        assert level not in log, log
    assert "gracefully shutting down" in log
