# The locked install (requirements/main.lock: the versions CI tested, torch's CPU build) of
# the package on Python 3.11; .ci/run installs the test lock the same way.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    KILN_DATA_DIR=/data

# LightGBM's wheel links the system's OpenMP runtime, which the slim image lacks.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/modelkiln
COPY requirements/main.lock ./requirements/
RUN pip install -r requirements/main.lock
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
COPY modelkiln ./modelkiln
RUN pip install --no-deps -e .

VOLUME ["/data"]
EXPOSE 8000 8001
CMD ["kiln", "serve", "--host", "0.0.0.0", "--port", "8000"]
