# totaler in a container: `docker build -t totaler .` then `docker run --rm totaler` for help.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Pure Python: pip needs no compiler, and its build environment is thrown away.
COPY pyproject.toml README.md totaler.py ./
# EXTRAS=dask makes an image for the workers of a Dask cluster (compose.yaml).
ARG EXTRAS=""
# This project itself, with an optional extra: nothing to pin.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --root-user-action=ignore ".${EXTRAS:+[$EXTRAS]}" \
 && rm -rf build ./*.egg-info \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin totaler

COPY events.csv ./

USER 10001
EXPOSE 8000
# --serve listens on every address of the container, so `docker run -p 8000:8000` reaches it.
ENV TOTALER_HOST=0.0.0.0

# Serving: ask /healthz on the port PID 1 was given. Counting once: nothing to check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; a = open('/proc/1/cmdline').read().split('\\0'); p = a[a.index('--port') + 1] if '--port' in a else next((x[7:] for x in a if x.startswith('--port=')), '8000'); '--serve' in a and u.urlopen('http://127.0.0.1:' + p + '/healthz', timeout=2)"]

# Exec form: totaler is PID 1 and gets docker stop's SIGTERM itself.
ENTRYPOINT ["totaler"]
