# One image for the service, the mailbox scanner and the operator.
#   docker build -t bounce-operator .
#   service:  bounce-service serve --config /etc/bounce-operator/config/bounceconfig.yaml --host 0.0.0.0 --port 8080
#   scanner:  bounce-service scan --config ... --mailbox NAME
#   operator: bounce-operator --all-namespaces
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY operator ./operator
COPY crds ./crds
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
# Non-root, with the ids the operator and the chart run every pod as (runAsUser 65532); no home needed.
RUN groupadd --gid 65532 bounce && useradd --uid 65532 --gid bounce --no-create-home --shell /usr/sbin/nologin bounce
COPY --from=build /install /usr/local
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["bounce-service"]
CMD ["serve", "--config", "/etc/bounce-operator/config/bounceconfig.yaml", "--host", "0.0.0.0", "--port", "8080"]
