# tokensvc container image. Build from the repository root:
#
#   docker build -t tokensvc:0.1.0 .
#
# Two stages on one base image: `build` turns the project and its dependencies into wheels and
# installs them into the virtualenv /opt/venv; `runtime` copies only that venv. The venv's
# `python` is a symlink to the base image's interpreter, so both stages must use the same
# PYTHON_IMAGE. Every dependency ships manylinux wheels for amd64 and arm64, so no compiler is
# installed in either stage.
#
# The tag below is pinned; production builds should also pin the digest, e.g.
#   --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest>
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /src
# tokensvc/schema is a relative symlink to ../schema (the SQL migrations), so schema/ must sit
# next to tokensvc/ for the wheel to carry tokensvc/schema/*.sql. README.md is the project's
# `readme` in pyproject.toml.
COPY pyproject.toml README.md ./
COPY schema/ schema/
COPY tokensvc/ tokensvc/

# Wheels for tokensvc and every dependency, then an offline install of exactly those wheels into
# a venv without pip or setuptools (the system pip installs into it via --python). pip compiles
# the .py files as it installs, so the read-only runtime image never needs to write bytecode.
# The smoke check runs isolated (-I) so it imports the installed package, not /src/tokensvc.
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && pip --python /opt/venv/bin/python install --no-cache-dir --no-index \
        --find-links /wheels /wheels/*.whl \
    && /opt/venv/bin/python -I -c "import tokensvc.cli, tokensvc.storage.migrate as m; assert m.migration_files(m.default_schema_dir())" \
    && /opt/venv/bin/tokensvc --help >/dev/null


FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tokensvc" \
      org.opencontainers.image.description="Asynchronous OAuth 2.0 / OpenID Connect token-issuance service" \
      org.opencontainers.image.version="${VERSION}"

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify the user from USER alone. The
# base image's own pip and setuptools go too: nothing at runtime installs packages, and the
# service's venv never saw them.
RUN groupadd --system --gid 10001 tokensvc \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin tokensvc \
    && python -m pip uninstall --yes pip setuptools wheel

COPY --from=build /opt/venv /opt/venv

# The pods run with readOnlyRootFilesystem and a writable emptyDir at /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001

# 8080: public token endpoints (and /healthz, /readyz, /metrics); 8081: internal API the login
# service calls; 8090: the login service (`serve login`).
EXPOSE 8080 8081 8090

ENTRYPOINT ["tokensvc"]
CMD ["serve", "token"]
