# The course in a container: Debian 12 (bookworm), Python 3.11, mxnet 1.9.1, Debian's
# Fashion-MNIST, JupyterLab on port 8888. Builds for the machine it runs on: linux/amd64 on a PC,
# linux/arm64 on Apple Silicon (there tools/fix_mxnet_aarch64.sh makes mxnet's aarch64 wheel
# load). See README.md, 'Which computers':
#     docker build -t d2l-batch-norm .
#     docker run --rm -it --init -p 8888:8888 -v "$PWD/notebooks:/home/learner/course/notebooks" d2l-batch-norm
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A non-root user owns the course and the venv; uid 1000 matches most Linux desktops, so
# notebooks saved into a mounted folder stay the learner's.
RUN useradd --create-home --uid 1000 --shell /bin/bash learner \
    && mkdir -p /opt/venv /home/learner/course \
    && chown learner:learner /opt/venv /home/learner/course
WORKDIR /home/learner/course

# Only what the install reads, so that editing a notebook does not redo the install layers.
COPY --chown=learner:learner tools/install.sh tools/fix_mxnet_aarch64.sh tools/
COPY --chown=learner:learner requirements.txt pyproject.toml README.md ./
COPY --chown=learner:learner d2l_utils/ d2l_utils/

# As root: Debian's dataset-fashion-mnist and the system libraries mxnet needs, then a clean apt.
RUN bash tools/install.sh --system-only && rm -rf /var/lib/apt/lists/*

# As the learner: the venv in /opt/venv, requirements.txt, an import check.
USER learner
RUN bash tools/install.sh --no-system --venv /opt/venv

COPY --chown=learner:learner . .

EXPOSE 8888
# --ip=0.0.0.0: reachable through -p 8888:8888. The login token is printed in the log.
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "notebooks/"]
