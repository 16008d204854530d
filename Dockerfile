# strongroom's container image: the server and the `strongroom` command from the wheel, run
# by a user without privileges. docs/deploy.md says how to run it.
#
#   docker build -t strongroom .
#
# The image serves plain HTTP on 0.0.0.0:8000 (`--insecure`): put it behind a proxy that
# terminates TLS, or give it a certificate with STRONGROOM_TLS_CERT and STRONGROOM_TLS_KEY
# (then it serves HTTPS). No master key is baked in: give STRONGROOM_MASTER_KEY_FILE, a
# mounted secret. The runtime stage installs with deploy/install-wheel.sh, which
# tests/test_packaging.py also runs in a clean virtual environment.

# -- build: the wheel, from the sources -----------------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m pip install --no-cache-dir --quiet "build>=1.2"
# .gitignore tells the build backend what to leave out (caches, local data).
COPY pyproject.toml README.md .gitignore ./
COPY src ./src
RUN python -m build --wheel --outdir /dist

# -- runtime: that wheel with the server extra, and nothing of the build --------------------
FROM python:3.11-slim AS runtime
# A fixed uid, so a host file given to the container (the master key) can be made readable
# by it alone: chown 10001 master.key.
RUN groupadd --system --gid 10001 strongroom \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/strongroom --shell /usr/sbin/nologin strongroom \
    && install -d -m 0700 -o 10001 -g 10001 /var/lib/strongroom
COPY deploy/install-wheel.sh deploy/healthcheck.py /usr/local/lib/strongroom/
COPY --from=build /dist/ /tmp/wheels/
# The wheel's extras: `--build-arg EXTRAS=server,otel` adds tracing (STRONGROOM_OTEL_ENDPOINT).
ARG EXTRAS=server
RUN PIP_NO_CACHE_DIR=1 EXTRAS="$EXTRAS" \
    sh /usr/local/lib/strongroom/install-wheel.sh /tmp/wheels /opt/strongroom \
    && rm -rf /tmp/wheels
ENV PATH=/opt/strongroom/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The working directory holds ./data: the SQLite database by default (mount a volume here),
# the engine's state and the process's stable id.
WORKDIR /var/lib/strongroom
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/lib/strongroom/healthcheck.py"]
CMD ["strongroom", "serve", "--host", "0.0.0.0", "--insecure"]
