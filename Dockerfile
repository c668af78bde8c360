# Image for `eokafka run` workers; docker-compose.yml runs the example app with it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the framework from a scratch directory so only the installed copy is imported.
WORKDIR /src
# README.m[d] copies the README when present without failing when it is not.
COPY pyproject.toml README.m[d] ./
COPY eokafka ./eokafka
COPY connectors ./connectors
RUN pip install . && rm -rf /src

# Apps are loaded as module:app, so their code sits on PYTHONPATH.
WORKDIR /app
COPY examples ./examples
ENV PYTHONPATH=/app

RUN useradd --create-home --uid 10001 eokafka
USER eokafka

EXPOSE 9400
CMD ["eokafka", "run", "examples.orders:app", "--bootstrap-servers", "kafka:9092", \
     "--metrics-port", "9400", "--create-topics"]
