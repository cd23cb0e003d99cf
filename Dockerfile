# The bridge: `handoff-bridge serve` (Rasa action endpoint + 8x8 webhook + relay), or the 8x8
# simulator (`handoff-bridge simulator`) from the same image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY actions ./actions
RUN pip install . && useradd --create-home --uid 10001 bridge
USER bridge

EXPOSE 5055
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:5055/health').status != 200)"
CMD ["handoff-bridge", "serve"]
