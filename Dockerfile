# ems-agent project image: the agent (`ems-agent run`) and the simulators (`ems-agent simulate`).
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/ems-agent
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY drivers ./drivers
COPY simulators ./simulators
COPY common ./common
RUN pip install --no-cache-dir . \
    && useradd --system --home-dir /var/lib/ems --create-home ems
USER ems
WORKDIR /var/lib/ems
ENTRYPOINT ["ems-agent"]
CMD ["--help"]
