# qaudio server image (CPU): `qaudio serve` on a model directory mounted at /model.
#
#   docker build -t qaudio .
#   docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/runs/demo/model:/model:ro" \
#       -e QAUDIO_API_KEY=change-me qaudio
#
# Inside the container the server binds 0.0.0.0 (a published port reaches nothing else);
# publish it on 127.0.0.1 as above, or set QAUDIO_API_KEY before exposing it further.
# CUDA: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (and run
# with --gpus all); the rest is the same (README, "Share and deploy").
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY qaudio ./qaudio
COPY tasks ./tasks
COPY data_recipes ./data_recipes
COPY eval_suites ./eval_suites
# torch first, from the index that matches the hardware (the CPU build is ~200 MB, CUDA's GBs).
RUN pip install --index-url "$TORCH_INDEX" "torch>=2.4" \
 && pip install ".[serve,vad]" \
 && useradd --create-home --uid 1000 qaudio

USER qaudio
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"
ENTRYPOINT ["qaudio", "serve", "/model", "--host", "0.0.0.0", "--port", "8000"]
