# Image for the API, worker, scheduler and Flower services of docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY order_engine ./order_engine
COPY workers ./workers
COPY migrations ./migrations
RUN pip install --no-cache-dir '.[flower]' && useradd --create-home engine
USER engine
EXPOSE 8000
CMD ["order-engine", "api"]
