"""The container's health check: exit 0 when this container's server answers /healthz.

It asks 127.0.0.1 on ``STRONGROOM_PORT`` (default 8000), over HTTPS when
``STRONGROOM_TLS_CERT`` is set, as ``strongroom serve`` then serves. Python's standard library
only, since the slim image has no curl. The certificate names the public host, not
127.0.0.1, so it is not verified here: this checks that the process answers, not who it is,
and sends nothing secret. tests/test_packaging.py runs it against a server.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0


def healthz_url() -> str:
    port = os.environ.get("STRONGROOM_PORT") or "8000"
    scheme = "https" if os.environ.get("STRONGROOM_TLS_CERT") else "http"
    return f"{scheme}://127.0.0.1:{port}/healthz"


def unverified_tls() -> ssl.SSLContext:
    """TLS that checks neither the certificate nor its name (see the module's docstring)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def main() -> int:
    url = healthz_url()
    context = unverified_tls() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS, context=context) as answer:  # noqa: S310
            status = int(answer.status)
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
