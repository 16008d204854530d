"""The packages and the deployment recipes, as a user gets them.

``python -m build`` makes the sdist and, from it, the wheel, once for the module. The wheel
is then installed into clean virtual environments (no system site packages, nothing of
this repository's ``.venv``): with the server extra by ``deploy/install-wheel.sh``, the very
script the container image installs itself with, since no container daemon runs here; and
bare, as a client needs it. The Dockerfile, compose.yaml and the systemd units are checked
for the properties that keep a deployment safe. The Node package's ``npm pack`` is checked
by the Node suite (clients/node/test/package.test.js).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # PyYAML, which the dev extra installs (schemathesis needs it)
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from strongroom.server.settings import Settings

from .support import STRONGROOM, ServerProcess, free_port, wait_until
from .test_serve_tls import write_certificate

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "strongroom"
DEPLOY = REPO / "deploy"
INSTALL_WHEEL = DEPLOY / "install-wheel.sh"
INSTALL_TIMEOUT = 300  # seconds; a cold pip cache downloads every dependency

# What a client install must never bring: the server's and the CLI's dependencies.
SERVER_ONLY = {
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "dbos",
    "cryptography",
    "click",
    "rich",
    "pydantic-settings",
    "limits",
    "redis",
    "prometheus-client",
}


# -- helpers ---------------------------------------------------------------------------------
def outside_env(**extra: str) -> dict[str, str]:
    """This machine's environment (pip's configuration, HOME, PATH) without what would
    leak the test run into a clean install: STRONGROOM_* settings, PYTHONPATH, the venv."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("STRONGROOM_", "PYTHON", "VIRTUAL_ENV", "PYTEST", "COV_"))
    }
    return {**env, **extra}


def venv_env(venv: Path, **extra: str) -> dict[str, str]:
    """As the image runs its commands: the venv's bin first on PATH, output unbuffered."""
    path = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return outside_env(PATH=path, PYTHONUNBUFFERED="1", **extra)


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{shlex.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
    )
    return done


def distributions(venv: Path) -> dict[str, list[str]]:
    """Each distribution installed in ``venv`` (canonical name) and its Requires-Dist."""
    script = (
        "import importlib.metadata as m, json; print(json.dumps("
        "{d.metadata['Name']: d.requires or [] for d in m.distributions()}))"
    )
    done = run([str(venv / "bin" / "python"), "-c", script], outside_env())
    return {canonicalize_name(k): v for k, v in json.loads(done.stdout).items()}


def closure(roots: set[str], requires: dict[str, list[str]]) -> set[str]:
    """``roots`` and everything they require, transitively, on this interpreter (the venv's
    is the same), extras left out."""
    found: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for spec in requires[name]:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return found


def start(argv: list[str], workdir: Path, env: dict[str, str], port: int) -> ServerProcess:
    """Start a server command from a venv in ``workdir`` and wait until /healthz answers,
    over HTTPS (trusting the certificate it was given) when it has one."""
    log_path, stdout_path = workdir / f"server-{port}.log", workdir / f"server-{port}.out"
    with log_path.open("wb") as log, stdout_path.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=workdir, stdout=out, stderr=log)
    cert = env.get("STRONGROOM_TLS_CERT")
    scheme = "https" if cert else "http"
    server = ServerProcess(process, f"{scheme}://127.0.0.1:{port}", log_path, stdout_path, env)
    trust = ssl.create_default_context(cafile=cert) if cert else True

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{shlex.join(argv)}: exited {process.returncode}\n{server.log()}")
        try:
            return httpx.get(f"{server.base_url}/healthz", verify=trust, timeout=1).is_success
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, f"{shlex.join(argv)} answering /healthz")
    except AssertionError:
        server.stop()
        raise
    return server


def stopped(server: ServerProcess) -> None:
    """Stop ``server`` as a container runtime or systemd does (SIGTERM): a clean exit, or
    the signal re-raised after a clean shutdown, as uvicorn does."""
    assert server.stop(signal.SIGTERM) in {0, -signal.SIGTERM}, server.log()


# -- the Dockerfile, read as instructions ----------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str
    argument: str

    def exec_form(self) -> list[str]:
        """The JSON array of a CMD or HEALTHCHECK's CMD."""
        text = self.argument
        if self.keyword == "HEALTHCHECK":
            text = text[text.index(" CMD ") + len(" CMD ") :]
        parsed = json.loads(text)
        assert isinstance(parsed, list), text
        return [str(word) for word in parsed]


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's stages, each a list of instructions starting with its FROM."""
    text = (REPO / "Dockerfile").read_text()
    logical = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text)  # continuation lines, as Docker joins them
    stages: list[list[Instruction]] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, argument = line.partition(" ")
        instruction = Instruction(keyword.upper(), " ".join(argument.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{line!r} before the first FROM"
        stages[-1].append(instruction)
    return stages


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


# -- fixtures: the distributions and two clean environments ------------------------------------
@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, as ``python -m build`` makes them."""
    out = tmp_path_factory.mktemp("dist")
    run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        outside_env(),
        timeout=INSTALL_TIMEOUT,
    )
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("strongroom-*.whl")
    return found


@dataclass(frozen=True)
class Venvs:
    server: Path  # the wheel with the server extra, installed by the image's own script
    client: Path  # the bare wheel
    client_before: set[str]  # the client venv's distributions before the wheel went in


@pytest.fixture(scope="module")
def venvs(dist: Path, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venvs:
    """Both clean environments, installed at the same time: most of the module's time."""
    server = tmp_path_factory.mktemp("server") / "venv"
    client = tmp_path_factory.mktemp("client") / "venv"
    run([sys.executable, "-m", "venv", str(client)], outside_env())
    before = set(distributions(client))
    installs = {
        "deploy/install-wheel.sh": subprocess.Popen(
            ["sh", str(INSTALL_WHEEL), str(dist), str(server)],
            env=outside_env(PYTHON=sys.executable),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
        "pip install (client)": subprocess.Popen(
            [str(client / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
            env=outside_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ),
    }
    failed = []
    for what, process in installs.items():
        try:
            output, _ = process.communicate(timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
        if process.returncode != 0:
            failed.append(f"{what}: {process.returncode}\n{output}")
    assert not failed, "\n".join(failed)
    return Venvs(server, client, before)


@pytest.fixture(scope="module")
def server_venv(venvs: Venvs) -> Path:
    return venvs.server


# -- the archives ----------------------------------------------------------------------------
def package_files() -> set[str]:
    """The package's files in the working tree, as paths under ``strongroom/``."""
    return {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.e2e
def test_the_archives_hold_the_package_and_nothing_else(dist: Path, wheel: Path) -> None:
    """Serving needs the migrations (and any static file) beside the code: every file of
    src/strongroom goes in, and no test, data, key, cache or other part of the repository."""
    expected = package_files()
    assert "strongroom/server/storage/migrations/env.py" in expected
    assert "strongroom/server/storage/migrations/script.py.mako" in expected
    assert "strongroom/py.typed" in expected

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    metadata = {n for n in names if n.startswith("strongroom-") and ".dist-info/" in n}
    assert names - metadata == expected

    (sdist,) = dist.glob("strongroom-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = [m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()]
    packaged = {m.removeprefix("src/") for m in members if m.startswith("src/")}
    assert packaged == expected
    assert set(members) - {f"src/{p}" for p in packaged} == {
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "PKG-INFO",
    }


# -- the server, installed as the image installs it ------------------------------------------
@pytest.mark.e2e
def test_wheel_with_server_extra_migrates_and_serves(server_venv: Path, tmp_path: Path) -> None:
    """`make run`'s steps from the installed wheel: migrate, serve --dev, use the key."""
    config = (server_venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in config
    strongroom = str(server_venv / "bin" / "strongroom")
    env = venv_env(server_venv)
    (tmp_path / "data").mkdir(mode=0o700)
    run([strongroom, "migrate"], env, cwd=tmp_path)
    assert (tmp_path / "data" / "strongroom.db").exists()

    port = free_port()
    server = start([strongroom, "serve", "--dev", "--port", str(port)], tmp_path, env, port)
    try:
        wait_until(lambda: "export STRONGROOM_API_KEY=" in server.stdout(), "bootstrap key")
        key = server.stdout().split("export STRONGROOM_API_KEY=", 1)[1].split()[0]
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.base_url, headers=auth, timeout=10) as client:
            created = client.post("/v1/secrets", json={"name": "packaged", "value": "from-wheel"})
            assert created.status_code == 201, created.text
            assert client.get("/v1/secrets/packaged").json()["value"] == "from-wheel"
    finally:
        stopped(server)


@pytest.fixture(scope="module")
def image_workdir(
    server_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str], str]:
    """A working directory as the image's, with a master key file (as compose mounts it),
    a migrated database and an API key made with the CLI."""
    tmp_path = tmp_path_factory.mktemp("image")
    key_file = tmp_path / "secrets" / "master_key"
    key_file.parent.mkdir(mode=0o700)
    key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
    key_file.chmod(0o600)
    workdir = tmp_path / "var-lib-strongroom"
    workdir.mkdir(mode=0o700)
    env = venv_env(server_venv, STRONGROOM_MASTER_KEY_FILE=str(key_file))
    run(["strongroom", "migrate"], env, cwd=workdir)
    created = run(["strongroom", "keys", "create", "--tenant", "default", "-q"], env, cwd=workdir)
    return workdir, env, created.stdout.strip()


def image_command() -> list[str]:
    """The Dockerfile's CMD. It listens on 0.0.0.0; a test listens on 127.0.0.1 instead
    (it opens no port on every interface), its other arguments, --insecure included, as
    written."""
    argv = only(dockerfile_stages()[-1], "CMD").exec_form()
    argv[argv.index("--host") + 1] = "127.0.0.1"
    return argv


def image_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, with the file the Dockerfile copies from deploy/."""
    runtime = dockerfile_stages()[-1]
    argv = only(runtime, "HEALTHCHECK").exec_form()
    script = Path(argv[1])
    copies = [
        i.argument.split() for i in runtime if i.keyword == "COPY" and "--from" not in i.argument
    ]
    assert any(f"deploy/{script.name}" in c[:-1] and c[-1] == f"{script.parent}/" for c in copies)
    argv[1] = str(DEPLOY / script.name)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.e2e
def test_image_command_serves_and_its_healthcheck_follows(
    image_workdir: tuple[Path, dict[str, str], str],
) -> None:
    """The Dockerfile's CMD and HEALTHCHECK, run from the wheel the image's script installed."""
    workdir, env, key = image_workdir
    port = free_port()
    env = {**env, "STRONGROOM_PORT": str(port)}  # the CMD gives no --port: the setting applies
    server = start(image_command(), workdir, env, port)
    try:
        auth = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(f"{server.base_url}/v1/secrets", headers=auth, timeout=10)
        assert listed.status_code == 200, listed.text
        healthy = image_healthcheck(env)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        stopped(server)
    unhealthy = image_healthcheck(env)
    assert unhealthy.returncode == 1
    assert "unhealthy" in unhealthy.stderr


@pytest.mark.e2e
def test_image_healthcheck_speaks_https_when_given_a_certificate(
    image_workdir: tuple[Path, dict[str, str], str],
) -> None:
    """The image given STRONGROOM_TLS_CERT and _KEY serves HTTPS, and its check follows."""
    workdir, env, _ = image_workdir
    cert, key = write_certificate(workdir.parent)
    port = free_port()
    env = {
        **env,
        "STRONGROOM_PORT": str(port),
        "STRONGROOM_TLS_CERT": str(cert),
        "STRONGROOM_TLS_KEY": str(key),
    }
    server = start(image_command(), workdir, env, port)
    try:
        assert server.base_url.startswith("https://")
        healthy = image_healthcheck(env)
        assert healthy.returncode == 0, healthy.stderr
        plain = image_healthcheck({**env, "STRONGROOM_TLS_CERT": ""})
        assert plain.returncode == 1, "the check speaks HTTPS to an HTTPS server"
    finally:
        stopped(server)


@pytest.mark.e2e
def test_install_script_refuses_the_dev_extra(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    refused = subprocess.run(
        ["sh", str(INSTALL_WHEEL), str(wheel.parent), str(venv)],
        env=outside_env(EXTRAS="server,dev"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 64
    assert "dev extra" in refused.stderr
    assert not venv.exists()


# -- the client alone ------------------------------------------------------------------------
@pytest.mark.e2e
def test_bare_wheel_installs_the_client_and_only_its_dependencies(venvs: Venvs) -> None:
    venv, before = venvs.client, venvs.client_before
    installed = distributions(venv)
    expected = closure({"httpx", "pydantic"}, installed)
    assert set(installed) - before == expected | {"strongroom"}
    assert not SERVER_ONLY & set(installed)

    script = (
        "import strongroom\n"
        "client = strongroom.Strongroom(api_key='sr_x', base_url='http://127.0.0.1:9')\n"
        "client.close()\n"
        "print(strongroom.Strongroom.__name__, strongroom.AsyncStrongroom.__name__)\n"
    )
    done = run([str(venv / "bin" / "python"), "-c", script], outside_env())
    assert done.stdout.split() == ["Strongroom", "AsyncStrongroom"]


# -- the recipes, read -----------------------------------------------------------------------
def test_dockerfile_builds_in_one_stage_and_runs_unprivileged_from_the_wheel() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    runtime = stages[-1]
    assert only(runtime, "FROM").argument.split()[0] == "python:3.11-slim"
    build_name = stages[0][0].argument.split()[-1]
    assert any(i.keyword == "COPY" and f"--from={build_name}" in i.argument for i in runtime), (
        "the runtime stage takes the wheel from the build stage"
    )

    # Installed by the script the tests run, with the server extra only.
    text = (REPO / "Dockerfile").read_text()
    assert "[dev]" not in text
    installs = [i for i in runtime if i.keyword == "RUN" and "install-wheel.sh" in i.argument]
    assert len(installs) == 1
    assert only(runtime, "ARG").argument == "EXTRAS=server"

    # A fixed, non-root user, to the end; the image's place and port.
    users = [i.argument for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users
    last_user = max(n for n, i in enumerate(runtime) if i.keyword == "USER")
    assert all(i.keyword not in {"RUN", "COPY", "ADD"} for i in runtime[last_user:])
    assert only(runtime, "WORKDIR").argument == "/var/lib/strongroom"
    assert only(runtime, "EXPOSE").argument == "8000"
    assert only(runtime, "HEALTHCHECK").exec_form()[0] == "python"
    assert only(runtime, "CMD").exec_form() == [
        "strongroom",
        "serve",
        "--host",
        "0.0.0.0",  # noqa: S104 (what the image says; the test listens on 127.0.0.1)
        "--insecure",
    ]

    # No secret baked in, in any stage.
    for stage in stages:
        for instruction in stage:
            if instruction.keyword in {"ENV", "ARG", "LABEL"}:
                assert not re.search(r"KEY|PASSWORD|TOKEN|SECRET", instruction.argument), (
                    instruction
                )
            if instruction.keyword in {"COPY", "ADD"}:
                assert not re.search(r"\bdata\b|\.key\b|compose/", instruction.argument), (
                    instruction
                )


def test_dockerignore_lets_in_only_what_the_image_is_built_from() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is left out unless named"
    allowed = {
        "!pyproject.toml",
        "!README.md",
        "!.gitignore",
        "!src/",
        "!deploy/install-wheel.sh",
        "!deploy/healthcheck.py",
    }
    assert {line for line in lines if line.startswith("!")} == allowed


def test_compose_runs_servers_and_a_worker_each_with_its_own_executor_id() -> None:
    document: dict[str, Any] = yaml.safe_load((REPO / "compose.yaml").read_text())
    services: dict[str, dict[str, Any]] = document["services"]
    assert str(services["postgres"]["image"]).startswith("postgres:15")
    assert str(services["redis"]["image"]).startswith("redis:7")
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name], name

    strongroom = ["migrate", "server-1", "server-2", "worker"]
    assert services["migrate"]["command"] == ["strongroom", "migrate"]
    assert services["worker"]["command"] == ["strongroom", "worker"]
    executor_ids = []
    for name in strongroom:
        service = services[name]
        env = service["environment"]
        assert env["STRONGROOM_MASTER_KEY_FILE"] == "/run/secrets/master_key", name
        assert "master_key" in service["secrets"], name
        assert "STRONGROOM_MASTER_KEY" not in env, name
        assert env["STRONGROOM_REDIS_URL"].startswith("redis://"), name
        # No password in the URL: the database's comes from a secret file (PGPASSFILE).
        userinfo = env["STRONGROOM_DATABASE_URL"].split("://", 1)[1].split("@", 1)[0]
        assert ":" not in userinfo, name
        assert str(env["PGPASSFILE"]).startswith("/run/secrets/"), name
        if name != "migrate":
            executor_ids.append(env["STRONGROOM_EXECUTOR_ID"])
            depends = service["depends_on"]
            assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert len(set(executor_ids)) == 3, executor_ids
    # The servers keep the image's /healthz check; no server port opens beyond loopback.
    for name in ("server-1", "server-2"):
        assert "command" not in services[name]
        assert "healthcheck" not in services[name]
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), port

    # The secrets come from files, kept out of git, never from the file itself.
    for secret in document["secrets"].values():
        assert set(secret) == {"file"}, secret
        assert secret["file"].startswith("./deploy/compose/")
    assert "deploy/compose/" in (REPO / ".gitignore").read_text().splitlines()
    assert not re.search(r"[A-Za-z0-9+/]{43}=", (REPO / "compose.yaml").read_text())


# -- the systemd units -----------------------------------------------------------------------
UNITS = {"strongroom.service": "serve", "strongroom-worker.service": "worker"}


def unit_settings(path: Path) -> list[tuple[str, str]]:
    """A unit's ``Key=value`` lines in order (a key may repeat, as Environment= does)."""
    settings = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


@pytest.fixture
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze is not installed (apt-get install systemd)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.mark.e2e
def test_systemd_units_verify_and_are_hardened(systemd_analyze: str, tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the units, and ``security`` rates them well.

    verify checks that ExecStart's binary exists, and /opt/strongroom is not installed on
    the machine running the tests: it reads copies whose ExecStart names this repository's
    ``strongroom`` instead, the rest of each unit unchanged."""
    drop_ins = sorted((DEPLOY / "systemd" / "strongroom.service.d").glob("*.conf"))
    assert {d.name for d in drop_ins} == {"tls.conf", "pgpass.conf"}
    for unit, command in UNITS.items():
        settings = dict(unit_settings(DEPLOY / "systemd" / unit))
        assert settings["ExecStart"] == f"/opt/strongroom/bin/strongroom {command}"
        text = (DEPLOY / "systemd" / unit).read_text()
        copy = text.replace("/opt/strongroom/bin/strongroom", STRONGROOM)
        (tmp_path / unit).write_text(copy)
        # The optional drop-ins, checked as part of the unit ([Service] again, as systemd
        # merges a drop-in).
        (tmp_path / f"with-drop-ins-{unit}").write_text(
            "\n".join([copy, *(d.read_text() for d in drop_ins)])
        )

    units = [str(path) for path in sorted(tmp_path.glob("*.service"))]
    assert len(units) == 2 * len(UNITS)
    verified = subprocess.run(
        [systemd_analyze, "verify", "--man=no", *units],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on an unknown key or a value it cannot parse, and only says so.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, ""), verified
    for unit in units:
        # Exposure 0.0 (locked down) to 10.0 (unprotected), ten times over: at most 2.0.
        rated = subprocess.run(
            [systemd_analyze, "security", "--offline=true", "--threshold=20", unit],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rated.returncode == 0, rated.stdout[-2000:] + rated.stderr


def test_systemd_units_read_the_key_as_a_credential_with_their_own_executor_id() -> None:
    required = {
        ("DynamicUser", "yes"),
        ("StateDirectory", "strongroom"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("Restart", "on-failure"),
        ("EnvironmentFile", "/etc/strongroom/strongroom.env"),
        ("LoadCredential", "master_key:/etc/strongroom/master.key"),
        ("Environment", "STRONGROOM_MASTER_KEY_FILE=%d/master_key"),
        # %N, the unit's name, tells the server's id from the worker's (and each
        # instance's of a strongroom-worker@ template).
        ("Environment", "STRONGROOM_EXECUTOR_ID=%H-%N"),
    }
    for unit in UNITS:
        settings = unit_settings(DEPLOY / "systemd" / unit)
        assert required <= set(settings), required - set(settings)
        environment = [v for k, v in settings if k == "Environment"]
        assert not [v for v in environment if v.startswith("STRONGROOM_MASTER_KEY=")]


def test_systemd_environment_file_names_real_settings_and_holds_no_secret() -> None:
    fields = {f"STRONGROOM_{name.upper()}" for name in Settings.model_fields}
    named = []
    for line in (DEPLOY / "systemd" / "strongroom.env").read_text().splitlines():
        line = line.lstrip("#").strip()
        if re.fullmatch(r"STRONGROOM_[A-Z0-9_]+=\S*", line):
            name, _, value = line.partition("=")
            named.append(name)
            assert name in fields, name
            assert not re.search(r"KEY|PASSWORD|TOKEN", name), name
            assert "@" not in value or ":" not in value.split("://", 1)[-1].split("@")[0], value
    assert "STRONGROOM_DATABASE_URL" in named
