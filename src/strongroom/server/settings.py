"""Server settings, read from ``STRONGROOM_*`` environment variables.

Every field here must be documented in the README's settings table; a test checks it. The
task tools' settings are declared by each tool (``tasks/tools/registry.py``) and inherited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .tasks.tools.registry import AllToolSettings

DEV_MASTER_KEY_FILE = Path("data/master.key")


class Settings(BaseSettings, AllToolSettings):
    model_config = SettingsConfigDict(env_prefix="STRONGROOM_", extra="ignore")

    database_url: str = Field(
        "sqlite:///./data/strongroom.db",
        description="sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )
    database_pool_size: int = Field(
        10,
        ge=1,
        le=200,
        description="PostgreSQL connections a process keeps open: as many more may open in "
        "a burst, and the execution engine keeps as many again (docs/deploy.md)",
    )
    master_key: SecretStr | None = Field(None, description="base64 of 32 random bytes")
    master_key_file: Path | None = Field(
        None,
        description="file holding the base64 master key (two lines, old and new, during a rekey)",
    )
    barrier_heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="how often a server or worker marks itself alive and rereads its master "
        "key file; one silent for 3 intervals counts as gone (docs/rekey.md)",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # -- TLS and tracing (docs/deploy.md) ----------------------------------------------------
    tls_cert: Path | None = Field(
        None, description="PEM certificate chain `serve` presents (with STRONGROOM_TLS_KEY)"
    )
    tls_key: Path | None = Field(
        None, description="PEM private key of STRONGROOM_TLS_CERT (unencrypted)"
    )
    insecure_http: bool = Field(
        False,
        description="let `serve` listen on a non-loopback address without TLS (behind a "
        "proxy that terminates it)",
    )
    otel_endpoint: str | None = Field(
        None,
        description="base URL of an OTLP/HTTP collector to send request spans to; unset: off",
    )
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest request body")
    max_value_bytes: int = Field(64 * 1024, ge=1, description="largest secret value (UTF-8)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    sqlite_synchronous: Literal["NORMAL", "FULL"] = Field(
        "NORMAL", description="SQLite fsync policy: FULL survives power loss, NORMAL is faster"
    )
    # -- the secret lifecycle ---------------------------------------------------------------
    secret_recovery_days: int = Field(
        7,
        ge=0,
        le=365,
        description="days a deleted secret can be restored before it is purged (0: a delete "
        "purges at once)",
    )
    scheduler_seconds: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="how often the scheduler looks for due rotations and ended recovery windows",
    )
    metrics_listen: str | None = Field(
        None,
        description="host:port of the Prometheus /metrics listener (no key: keep it on a "
        "private interface); unset: off",
    )
    # -- abuse limits -----------------------------------------------------------------------
    rate_limit_per_key: str = Field(
        "100/second;3000/minute", description="requests one API key may make ('off' for none)"
    )
    rate_limit_per_address: str = Field(
        "200/second;6000/minute", description="requests one client address may make"
    )
    rate_limit_auth_failures: str = Field(
        "10/minute", description="failed authentications before an address is refused a while"
    )
    forwarded_allow_ips: str = Field(
        "",
        description="proxies whose X-Forwarded-For names the client (comma-separated IPs or *)",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="redis://HOST:PORT/DB (or rediss://, unix://) keeping the request budgets "
        "shared by every server; unset: each process counts its own",
    )
    # -- the audit trail --------------------------------------------------------------------
    audit_retention_days: int = Field(
        0,
        ge=0,
        le=100 * 366,
        description="days an audit event is kept before the server prunes it (0: forever)",
    )
    audit_prune_interval_seconds: float = Field(
        3600.0,
        gt=0,
        le=7 * 24 * 3600,
        description="how often a server or worker prunes the events past retention",
    )
    audit_file: Path | None = Field(
        None,
        description="append each committed audit event to this file, one JSON object a line "
        "(docs/audit.md)",
    )
    # -- browser sessions -------------------------------------------------------------------
    session_seconds: int = Field(
        8 * 3600,
        ge=60,
        le=7 * 24 * 3600,
        description="lifetime of a browser session (POST /v1/sessions), 1 minute to 7 days",
    )
    # -- tasks ------------------------------------------------------------------------------
    task_max_steps: int = Field(100, ge=1, le=10_000, description="steps in one task")
    task_max_result_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="bytes of one step's stored result (a tool's answer, an expression's value)",
    )
    task_max_execution_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="bytes one execution may store in all its steps"
    )
    task_concurrency: int = Field(
        8, ge=1, le=1024, description="executions running at once, all tenants and processes"
    )
    task_concurrency_per_tenant: int = Field(
        4, ge=1, le=1024, description="executions of one tenant running at once"
    )
    executor_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="this process's stable id in the execution engine, one per server and "
        "worker; unset: the host name and a suffix kept in data/executor-id",
    )
    engine_poll_seconds: float = Field(
        1.0,
        ge=0.05,
        le=60,
        description="how often each engine process looks for queued executions: the most a "
        "new execution waits to start, against the CPU an idle process spends looking",
    )
    executor_gone_seconds: float = Field(
        600.0,
        ge=1,
        le=30 * 24 * 3600,
        description="how long an executor id may go unseen before the executions it left "
        "pending are failed",
    )

    @model_validator(mode="after")
    def _executor_gone(self) -> Settings:
        if self.executor_gone_seconds < 3 * self.barrier_heartbeat_seconds:
            raise ValueError(
                "STRONGROOM_EXECUTOR_GONE_SECONDS must be at least three "
                "STRONGROOM_BARRIER_HEARTBEAT_SECONDS: a live process beats that often"
            )
        return self

    @field_validator("executor_id", mode="before")
    @classmethod
    def _unset_executor_id(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _task_concurrency(self) -> Settings:
        if self.task_concurrency_per_tenant > self.task_concurrency:
            raise ValueError(
                "STRONGROOM_TASK_CONCURRENCY_PER_TENANT cannot exceed STRONGROOM_TASK_CONCURRENCY"
            )
        return self

    @field_validator(
        "audit_file", "tls_cert", "tls_key", "otel_endpoint", "redis_url", mode="before"
    )
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # STRONGROOM_AUDIT_FILE= (empty) turns the file off, as leaving it unset does;
        # Path("") would be the current directory. The same for the TLS files, tracing and
        # the Redis URL.
        return None if value == "" else value

    @field_validator("otel_endpoint")
    @classmethod
    def _otel_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "give the collector's http:// or https:// URL, e.g. http://127.0.0.1:4318"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "give the collector's credentials in OTEL_EXPORTER_OTLP_HEADERS, not in the URL"
            )
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if not value:
            return None
        host, _, port = value.rpartition(":")
        if not host or not port.isascii() or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("give host:port, e.g. 127.0.0.1:9464")
        return value

    @field_validator("rate_limit_per_key", "rate_limit_per_address", "rate_limit_auth_failures")
    @classmethod
    def _budget(cls, value: str) -> str:
        from .ratelimit import parse_budget

        parse_budget(value)
        return value
