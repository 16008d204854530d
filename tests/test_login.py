"""``strongroom login``, ``logout``, ``whoami`` and the profiles every API command reads.

Attacker first: the saved key is private to its owner (0600 in a 0700 directory) and a
file others may read is refused rather than used; the key is never echoed or printed; a
profile's key goes to its own server only. End to end against a real server on SQLite
(a profile holds what the CLI sends; the database behind the server does not matter
here), each test in a HOME and XDG_CONFIG_HOME of its own. The TOML writer and the
refusals that come before any request run in process.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from strongroom.cli import profiles
from strongroom.cli.main import cli
from strongroom.server.apikeys import create_api_key
from strongroom.server.storage import open_store

from .conftest import MASTER_KEY, unsealed
from .support import ServerProcess, free_port, start_server
from .test_cli_client import Done, on_terminal, sr, sr_all


# -- a server for the module, a home per test --------------------------------------------------
@pytest.fixture(scope="module")
def login_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("login")
    url = f"sqlite:///{workdir / 'strongroom.db'}"
    server = start_server(
        workdir, {"STRONGROOM_DATABASE_URL": url, "STRONGROOM_MASTER_KEY": MASTER_KEY}
    )
    try:
        yield server
    finally:
        server.stop()


def issue_key(server: ServerProcess, tenant: str, name: str | None = None) -> str:
    store = open_store(server.env["STRONGROOM_DATABASE_URL"])
    try:
        key, _ = create_api_key(store, unsealed(store), tenant, name=name)
    finally:
        store.close()
    return key


@dataclass
class Home:
    """A user's home: the environment a command runs with, and where its config lives."""

    env: dict[str, str]
    config: Path

    def run(self, *args: str, stdin: str | None = None, **env: str) -> Done:
        return sr(list(args), {**self.env, **env}, stdin)

    def saved(self) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = tomllib.loads(self.config.read_text())["profiles"]
        return found


@pytest.fixture
def home(tmp_path: Path) -> Home:
    xdg = tmp_path / "xdg"
    return Home(
        {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(xdg)}, xdg / "strongroom" / "config.toml"
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- login -------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_login_checks_the_key_and_saves_it_for_its_owner_alone(
    login_server: ServerProcess, home: Home
) -> None:
    tenant = f"t_{uuid.uuid4().hex[:8]}"
    key = issue_key(login_server, tenant, name="laptop")
    done = home.run("login", "--base-url", login_server.base_url + "/", stdin=key + "\n")
    assert done.code == 0, done.err
    assert key not in done.out + done.err  # never printed
    assert f"of tenant '{tenant}'" in done.err and "(laptop)" in done.err
    assert str(home.config) in done.err and "profile 'default'" in done.err
    assert home.saved() == {"default": {"base_url": login_server.base_url, "api_key": key}}
    assert mode(home.config) == 0o600
    assert mode(home.config.parent) == 0o700
    assert [p.name for p in home.config.parent.iterdir()] == ["config.toml"]  # no temp left

    # Every API command now finds the key; whoami says whose it is, not what it is.
    listed, who = sr_all((["secrets", "list"], home.env), (["whoami"], home.env))
    assert listed.code == 0, listed.err
    assert who.code == 0, who.err
    assert f"tenant '{tenant}'" in who.out and "profile 'default'" in who.out
    assert login_server.base_url in who.out and key not in who.out + who.err


@pytest.mark.e2e
def test_login_prompts_for_the_key_without_echoing_it(
    login_server: ServerProcess, home: Home
) -> None:
    key = issue_key(login_server, f"t_{uuid.uuid4().hex[:8]}")
    code, shown = on_terminal(
        ["login", "--base-url", login_server.base_url],
        home.env,
        b"API key: ",
        key.encode() + b"\n",
    )
    assert code == 0, shown
    assert key.encode() not in shown  # not echoed, not printed
    assert b"saved as profile 'default'" in shown
    assert home.saved()["default"]["api_key"] == key


@pytest.mark.e2e
def test_a_key_the_server_refuses_is_not_saved(login_server: ServerProcess, home: Home) -> None:
    unknown = "sr_" + "A" * 38  # sent as it is: the server judges it
    refused, nowhere = sr_all(
        (["login", "--base-url", login_server.base_url, "--key-stdin"], home.env, unknown),
        (
            ["login", "--base-url", f"http://127.0.0.1:{free_port()}"],
            home.env,
            issue_key(login_server, "t_nowhere"),
        ),
    )
    assert refused.code == 5 and "unauthorized" in refused.err, refused.err
    assert nowhere.code == 6 and "could not reach" in nowhere.err, nowhere.err
    assert not home.config.exists()
    blank = home.run("login", "--base-url", login_server.base_url, stdin="\n")
    assert blank.code == 2 and "no API key on stdin" in blank.err


# -- choosing a profile ------------------------------------------------------------------------
@pytest.mark.e2e
def test_profiles_are_chosen_by_option_or_variable_and_given_keys_win(
    login_server: ServerProcess, home: Home
) -> None:
    tenants = {name: f"t_{name}_{uuid.uuid4().hex[:6]}" for name in ("a", "b", "c")}
    keys = {name: issue_key(login_server, tenant) for name, tenant in tenants.items()}
    url = login_server.base_url
    assert home.run("login", "--base-url", url, stdin=keys["a"]).code == 0
    assert home.run("login", "--base-url", url, "--profile", "staging", stdin=keys["b"]).code == 0
    assert set(home.saved()) == {"default", "staging"}

    given_key = {"STRONGROOM_API_KEY": keys["c"], "STRONGROOM_BASE_URL": url}
    runs = {
        "default": (["whoami", "--json"], home.env),
        "option": (["whoami", "--json", "--profile", "staging"], home.env),
        "variable": (["whoami", "--json"], {**home.env, "STRONGROOM_PROFILE": "staging"}),
        "option over variable": (
            ["whoami", "--json", "--profile", "default"],
            {**home.env, "STRONGROOM_PROFILE": "staging"},
        ),
        "given key": (["whoami", "--json", "--profile", "staging"], {**home.env, **given_key}),
    }
    done = dict(zip(runs, sr_all(*runs.values()), strict=True))
    answers = {case: json.loads(d.out) for case, d in done.items()}
    assert {case: a["tenant_name"] for case, a in answers.items()} == {
        "default": tenants["a"],
        "option": tenants["b"],
        "variable": tenants["b"],
        "option over variable": tenants["a"],
        "given key": tenants["c"],
    }
    assert answers["option"]["profile"] == "staging"
    assert answers["given key"]["profile"] is None
    assert "is used, not profile 'staging'" in done["given key"].err  # the conflict is said

    # A subcommand's --profile wins over its group's.
    nested = home.run("secrets", "--profile", "nope", "list", "--profile", "staging")
    assert nested.code == 0, nested.err
    missing = home.run("secrets", "list", "--profile", "nope")
    assert missing.code == 5 and "no profile 'nope'" in missing.err


@pytest.mark.e2e
def test_a_profiles_key_goes_to_its_own_server_only(
    login_server: ServerProcess, home: Home
) -> None:
    key = issue_key(login_server, f"t_{uuid.uuid4().hex[:8]}")
    assert home.run("login", "--base-url", login_server.base_url, stdin=key).code == 0
    elsewhere = f"http://127.0.0.1:{free_port()}"
    by_variable, by_option, same = sr_all(
        (["secrets", "list"], {**home.env, "STRONGROOM_BASE_URL": elsewhere}),
        (["secrets", "list", "--base-url", elsewhere], home.env),
        (["secrets", "list", "--base-url", login_server.base_url + "/"], home.env),
    )
    for refused in (by_variable, by_option):
        assert refused.code == 5, refused.err
        assert f"no API key for {elsewhere}" in refused.err and key not in refused.err
    assert same.code == 0, same.err


# -- the file is private, or it is not used ----------------------------------------------------
@pytest.mark.e2e
def test_a_config_file_others_can_read_is_refused(login_server: ServerProcess, home: Home) -> None:
    key = issue_key(login_server, f"t_{uuid.uuid4().hex[:8]}")
    assert home.run("login", "--base-url", login_server.base_url, stdin=key).code == 0
    home.config.chmod(0o640)
    listed, who, again = sr_all(
        (["secrets", "list"], home.env),
        (["whoami"], home.env),
        (["login", "--base-url", login_server.base_url], home.env, key),
    )
    for refused in (listed, who, again):
        assert refused.code == 5
        assert "open to other users (mode 0640)" in refused.err, refused.err
        assert f"chmod 600 {home.config}" in refused.err
    assert mode(home.config) == 0o640  # left as it was: not ours to fix silently

    home.config.chmod(0o600)
    assert home.run("whoami").code == 0
    done = home.run("logout")
    assert done.code == 0 and "removed profile 'default'" in done.err
    assert not home.config.exists()
    assert home.run("logout").code == 0  # nothing to remove is no failure
    gone = home.run("whoami")
    assert gone.code == 5 and "no API key" in gone.err and "strongroom login" in gone.err


def test_refusals_before_any_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: what is refused before a request is sent."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = profiles.config_path()
    assert path == tmp_path / "xdg" / "strongroom" / "config.toml"
    runner = CliRunner()
    assert "no API key" in runner.invoke(cli, ["secrets", "list"]).output
    bad = runner.invoke(cli, ["whoami", "--profile", "../etc"])
    assert bad.exit_code == 2 and "not a profile name" in bad.output

    profiles.save_profile("default", profiles.Profile("http://127.0.0.1:1", "sr_saved"))
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    path.chmod(0o604)
    done = runner.invoke(cli, ["secrets", "list"])
    assert done.exit_code == 5 and "open to other users (mode 0604)" in done.output
    path.chmod(0o600)
    path.write_text("[profiles.default]\nbase_url = 1\n")
    done = runner.invoke(cli, ["secrets", "list"])
    assert done.exit_code == 5 and "needs base_url and api_key" in done.output
    path.write_text("not toml at all = = =\n")
    assert "is not valid TOML" in runner.invoke(cli, ["whoami"]).output

    # A relative XDG_CONFIG_HOME is ignored, as the XDG specification says.
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    assert profiles.config_path() == tmp_path / ".config" / "strongroom" / "config.toml"


def test_saving_keeps_what_else_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "strongroom" / "config.toml"
    path.parent.mkdir(mode=0o755)
    path.write_text(
        'editor = "vi"\n[profiles.prod]\nbase_url = "https://p"\napi_key = "sr_p"\n'
        'note = "ops"\n[other]\nlist = [1, "two", {x = true}]\n'
    )
    path.chmod(0o600)
    profiles.save_profile("prod", profiles.Profile("https://p2", "sr_p2"), path)
    profiles.save_profile("dev", profiles.Profile("http://d", 'sr_"\\\n'), path)
    data = tomllib.loads(path.read_text())
    assert data == {
        "editor": "vi",
        "profiles": {
            "prod": {"base_url": "https://p2", "api_key": "sr_p2", "note": "ops"},
            "dev": {"base_url": "http://d", "api_key": 'sr_"\\\n'},
        },
        "other": {"list": [1, "two", {"x": True}]},
    }
    assert mode(path.parent) == 0o700  # narrowed: it holds keys
    assert profiles.remove_profile("dev", path) and not profiles.remove_profile("dev", path)
    assert set(tomllib.loads(path.read_text())["profiles"]) == {"prod"}


# -- the TOML writer ---------------------------------------------------------------------------
scalars = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",))),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
)
keys = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)
)
documents = st.dictionaries(keys, values, max_size=6)


@given(documents)
def test_what_the_writer_writes_reads_back_equal(data: dict[str, object]) -> None:
    assert tomllib.loads(profiles.dump(data)) == data


def test_file_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        profiles.write_private(tmp_path / "d" / "config.toml", "x = 1\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "d" / "config.toml") == 0o600
    assert mode(tmp_path / "d") == 0o700
