"""The deploy/ examples hold together: compose.yaml parses and runs PostgreSQL, the
migration, the web service, the scheduler and the https proxy with every required
setting; the systemd units pass `systemd-analyze verify`; the settings example lists
what the service reads. Nothing here pulls an image or needs a network."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
REQUIRED = ("LOYALTY_DATABASE_URL", "LOYALTY_PUBLIC_URL", "LOYALTY_SECRET_KEY", "B24_CLIENT_ID",
            "B24_CLIENT_SECRET", "LOYALTY_PROXY_HOPS")


@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def example_settings() -> set[str]:
    text = (DEPLOY / "loyalty.env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, re.M))


def test_compose_runs_the_six_parts(compose):
    services = compose["services"]
    assert set(services) == {"db", "migrate", "web", "scheduler", "worker", "proxy"}
    assert services["web"]["command"][:3] == ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
    assert services["scheduler"]["command"] == ["flask", "--app", "api", "scheduler", "run"]
    assert services["migrate"]["command"] == ["flask", "--app", "api", "db", "upgrade"]
    assert services["db"]["image"].startswith("postgres:")
    assert services["proxy"]["image"].startswith("caddy:")
    assert {"80:80", "443:443"} <= set(services["proxy"]["ports"])
    assert services["worker"]["command"][:5] == ["flask", "--app", "api", "scheduler", "work"]
    assert services["worker"]["deploy"]["replicas"] == "${LOYALTY_WORKER_REPLICAS:-2}"
    assert all("ports" not in services[name] for name in ("db", "web", "scheduler", "worker"))


def test_every_container_shares_the_rate_limit_buckets(compose):
    """A portal's 2 requests a second are one bucket for the web, the scheduler and the
    workers: its files on one volume, at the directory the limiter reads."""
    for name in ("web", "scheduler", "worker"):
        service = compose["services"][name]
        assert service["environment"]["LOYALTY_BUCKET_DIR"] == "/var/lib/loyalty/buckets", name
        assert "buckets:/var/lib/loyalty/buckets" in service["volumes"], name
    assert "mkdir -p /var/lib/loyalty/buckets" in (DEPLOY / "Dockerfile").read_text()


def test_web_and_scheduler_get_every_required_setting_and_wait_for_the_schema(compose):
    for name in ("web", "scheduler", "worker"):
        service = compose["services"][name]
        assert set(REQUIRED) <= set(service["environment"]), name
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["depends_on"]["db"] == {"condition": "service_healthy"}
        for setting in ("LOYALTY_PUBLIC_URL", "LOYALTY_SECRET_KEY", "B24_CLIENT_ID",
                        "B24_CLIENT_SECRET"):
            assert ":?" in service["environment"][setting], (name, setting)  # refused if unset
    assert compose["services"]["web"]["environment"]["LOYALTY_BIND"] == "0.0.0.0:8000"


def test_every_variable_compose_reads_is_in_the_settings_example(compose):
    text = (DEPLOY / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert used and used <= example_settings(), used - example_settings()
    assert set(REQUIRED) <= example_settings()


def test_the_proxy_forwards_to_the_web_service(compose):
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    assert "{$LOYALTY_DOMAIN}" in caddyfile and "reverse_proxy {$LOYALTY_UPSTREAM:" in caddyfile
    assert compose["services"]["proxy"]["environment"]["LOYALTY_UPSTREAM"] == "web:8000"
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in compose["services"]["proxy"]["volumes"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_systemd_units_verify(tmp_path):
    """Verified as they would be installed, with /opt/loyalty pointed at this checkout."""
    root = DEPLOY.parent
    for unit in (DEPLOY / "systemd").glob("*.service"):
        text = unit.read_text().replace("/opt/loyalty", str(root)).replace(
            "/etc/loyalty/loyalty.env", str(DEPLOY / "loyalty.env.example"))
        text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.M)
        (tmp_path / unit.name.replace("@.", "@1.")).write_text(text)  # a template's instance
    units = sorted(str(p) for p in tmp_path.glob("*.service"))
    assert len(units) == 3
    result = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_the_units_run_the_same_commands_as_compose():
    web = (DEPLOY / "systemd" / "loyalty-web.service").read_text()
    scheduler = (DEPLOY / "systemd" / "loyalty-scheduler.service").read_text()
    assert "ExecStartPre=/opt/loyalty/.venv/bin/flask --app api db upgrade" in web
    assert "gunicorn -c deploy/gunicorn.conf.py api:create_app()" in web
    assert "ExecStart=/opt/loyalty/.venv/bin/flask --app api scheduler run" in scheduler
    worker = (DEPLOY / "systemd" / "loyalty-worker@.service").read_text()
    assert "ExecStart=/opt/loyalty/.venv/bin/flask --app api scheduler work" in worker
    for text in (web, scheduler, worker):
        assert "EnvironmentFile=/etc/loyalty/loyalty.env" in text and "Restart=always" in text


def test_the_gunicorn_workers_freeze_what_the_app_built():
    """Once a worker has loaded the app, its objects leave the collector's generations."""
    import gc
    import runpy

    conf = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    gc.unfreeze()
    try:
        conf["post_worker_init"](worker=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
