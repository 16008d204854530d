"""``strongroom run``: start a command with secrets in its environment.

The secrets are fetched first, then this process *becomes* the command
(``os.execvpe``), rather than spawning it and waiting:

- the command's exit status is this process's, signals (Ctrl-C, ``kill``, a CI runner's
  SIGTERM) reach it directly, and stdin/stdout/stderr are simply its own, with no
  forwarding code to get wrong;
- no Python process lingers holding the values in memory while the command runs.

The cost is that nothing runs after the command (there is nothing to clean up). If the
command cannot be started the exit code is 127 (not found) or 126 (not executable), as a
shell's. Nothing of the values is printed.

``--all`` and ``--metadata`` take variable names from secret names, which anybody who
may write the tenant's secrets chooses. So they never set a name that makes the command
(or a program it starts) run something else (``LD_PRELOAD``, ``BASH_ENV``, ``PATH``...):
only an explicit ``--secret`` can. And the command does not get this process's own API
key, often one with every scope, unless ``--pass-api-key`` asks for it.
"""

from __future__ import annotations

import os
import sys

import click

from .common import (
    MAX_BATCH,
    ClientOptions,
    ExitCode,
    api_errors,
    client_options,
    fail,
    is_name,
    metadata_option,
    open_client,
    parse_metadata,
    read_values,
    resolve_options,
    warn,
)
from .progress import progress_bar

ENV_NAME_HELP = "letters, digits and underscores, not starting with a digit"

# Variables --all and --metadata never set (an explicit --secret may), each because a
# value in it makes the command, or a program it starts, run code or trust something it
# did not choose:
UNSAFE_NAMES = frozenset(
    {
        # a shell runs the file named, or its options and prompts run code; IFS re-splits
        "BASH_ENV", "ENV", "ZDOTDIR", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND",
        "IFS",
        # which program a command name runs
        "PATH",
        # where tools read configuration that can run commands (~/.gitconfig's
        # core.sshCommand, ~/.npmrc, a subshell's ~/.bashrc)
        "HOME", "XDG_CONFIG_HOME",
        # glibc loads the conversion modules found here
        "GCONV_PATH",
        # interpreter options and module paths: code loaded into every Node, Perl, Ruby,
        # JVM or PHP process started (Python's are all under the PYTHON prefix below)
        "NODE_OPTIONS", "NODE_PATH", "PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB",
        "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS",
        "CLASSPATH", "PHPRC", "PHP_INI_SCAN_DIR",
        # programs other programs run by these names
        "EDITOR", "VISUAL", "PAGER", "LESSOPEN", "LESSCLOSE", "BROWSER", "SSH_ASKPASS",
        "SUDO_ASKPASS",
        # where traffic goes, and which certificates are trusted: a planted proxy or CA
        # bundle reads every request the command makes, credentials included
        "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
    }
)  # fmt: skip
UNSAFE_PREFIXES = (
    "LD_",  # the dynamic linker: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT
    "DYLD_",  # macOS's
    "PYTHON",  # PYTHONPATH, PYTHONSTARTUP, PYTHONBREAKPOINT (imports a callable), ...
    # git reads dozens of GIT_ variables, several of which run commands or load
    # configuration that does (GIT_SSH_COMMAND, GIT_ASKPASS, GIT_EXEC_PATH,
    # GIT_CONFIG_COUNT/KEY_n/VALUE_n); a prefix does not go stale as git adds more
    "GIT_",
    # a strongroom command inside would send its key to STRONGROOM_BASE_URL
    "STRONGROOM_",
)


def unsafe_name(name: str) -> bool:
    """Whether ``--all``/``--metadata`` must not set a variable called ``name``."""
    return name in UNSAFE_NAMES or name.startswith(UNSAFE_PREFIXES)


def parse_mappings(specs: tuple[str, ...]) -> dict[str, str]:
    """``--secret`` values (``NAME`` or ``ENVNAME=NAME``) as {env var: secret name}."""
    mapping: dict[str, str] = {}
    for spec in specs:
        env_name, sep, secret_name = spec.partition("=")
        if not sep:
            secret_name = env_name
        if not is_name(secret_name):
            raise click.BadParameter(f"{secret_name!r} is not a secret name", param_hint="--secret")
        if not is_name(env_name):
            raise click.BadParameter(
                f"{env_name!r} is not a variable name ({ENV_NAME_HELP})", param_hint="--secret"
            )
        if env_name in mapping and mapping[env_name] != secret_name:
            raise click.BadParameter(f"{env_name} is given twice", param_hint="--secret")
        mapping[env_name] = secret_name
    return mapping


@click.command(
    "run",
    context_settings={"allow_interspersed_args": False},
    short_help="Run a command with secrets in its environment.",
)
@client_options(from_env=True)
@click.option(
    "--secret",
    "secret_specs",
    multiple=True,
    metavar="[ENVNAME=]NAME",
    help="add secret NAME as $NAME, or as $ENVNAME (repeatable)",
)
@click.option("--all", "all_secrets", is_flag=True, help="add every secret (of the filter)")
@metadata_option
@click.option(
    "--pass-api-key",
    is_flag=True,
    help="give COMMAND this command's API key as STRONGROOM_API_KEY (removed by default)",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@api_errors
def run(
    api_key: str | None,
    base_url: str | None,
    secret_specs: tuple[str, ...],
    all_secrets: bool,
    metadata_pairs: tuple[str, ...],
    pass_api_key: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with secrets added to its environment, as variables named like them.

    \b
        strongroom run --secret DATABASE_URL -- ./migrate.sh
        strongroom run --secret PGPASSWORD=prod_db_password -- psql
        strongroom run --metadata environment=production -- python app.py

    --metadata (alone, or with --all) adds every secret whose metadata matches, except
    those whose names are unsafe as variables (LD_*, PATH, BASH_ENV, ...; see `strongroom
    run` in docs/cli.md), and those whose value this key may not read: both are named on
    stderr and left out. Secrets override variables of the same name already set.
    STRONGROOM_API_KEY is removed from COMMAND's environment unless --pass-api-key
    (which gives a profile's key with its server, as STRONGROOM_BASE_URL).
    COMMAND replaces this process, so its exit code, signals and standard streams are
    its own; 127 if it is not found.
    """
    mapping = parse_mappings(secret_specs)
    explicit = set(mapping.values())
    metadata = parse_metadata(metadata_pairs)
    if not (mapping or all_secrets or metadata):
        raise click.UsageError("choose secrets with --secret, --all or --metadata")

    environment = dict(os.environ)
    environment.pop("STRONGROOM_API_KEY", None)
    options = resolve_options(ClientOptions(api_key, base_url))
    if pass_api_key and options.api_key:
        environment["STRONGROOM_API_KEY"] = options.api_key
        if options.profile and options.base_url:  # a profile's key, with its own server
            environment["STRONGROOM_BASE_URL"] = options.base_url
    with open_client(options) as client:
        if all_secrets or metadata:
            unsafe = []
            listed = client.secrets.list_all(metadata=metadata or None, page_size=MAX_BATCH)
            for secret in listed:
                if secret.name in mapping:
                    continue
                if unsafe_name(secret.name):
                    unsafe.append(secret.name)
                else:
                    mapping[secret.name] = secret.name
            if unsafe:
                warn(
                    "left out, as their names are unsafe as environment variables (name one "
                    f"with --secret to set it anyway): {', '.join(unsafe)}"
                )
        # Read in batches (a secret given two variable names once), a bar on a terminal
        # while --all or --metadata fetch many.
        wanted = list(dict.fromkeys(mapping.values()))
        with progress_bar(
            "reading secrets", len(wanted), show=bool(all_secrets or metadata)
        ) as bar:
            found = read_values(client, wanted, on_read=bar.advance)
        values = found.values
        unreadable: list[str] = []
        for secret_name in wanted:
            code = found.missed.get(secret_name)
            if code == "forbidden" and secret_name not in explicit:
                # A use-only secret (or one this key may not read): tasks can use it, a
                # command cannot. Only one --all found is left out; a named one fails.
                unreadable.append(secret_name)
            elif code is not None:  # fail with the error a read of it alone gives
                values[secret_name] = client.secrets.get(secret_name).value
        for env_name, secret_name in mapping.items():
            if secret_name not in values:
                continue
            if "\0" in values[secret_name]:
                fail(
                    f"the value of {secret_name} holds a NUL character, which an environment "
                    "variable cannot",
                    ExitCode.ERROR,
                )
            environment[env_name] = values[secret_name]
        if unreadable:
            warn(f"left out, as this API key may not read their values: {', '.join(unreadable)}")

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), environment)  # noqa: S606 - the user's command
    except FileNotFoundError:
        fail(f"command not found: {command[0]}", 127)
    except PermissionError:
        fail(f"command not executable: {command[0]}", 126)
    except OSError as exc:
        fail(f"cannot run {command[0]}: {exc.strerror}", 126)
