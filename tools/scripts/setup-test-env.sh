#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian/Ubuntu machine (run as root or with sudo):
# protoc (raft's build), kcat and librdkafka (client tests, perf harness), fio (disk baseline),
# a Python venv at .venv with confluent-kafka and kafka-python (with its codecs), and kafkajs
# under .node/ (nodejs and npm from apt only when `node` is missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  protobuf-compiler kcat librdkafka-dev pkg-config cmake fio python3-venv >/dev/null
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# lz4, python-snappy and zstandard: kafka-python's codecs (it compresses in Python).
.venv/bin/pip install -q --disable-pip-version-check confluent-kafka kafka-python lz4 python-snappy zstandard
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
# kafkajs is pinned: its protocol versions (Metadata v<=6, Fetch v<=11, JoinGroup v<=5) are what
# the kafkajs suite checks. .node/ is git-ignored.
KAFKAJS_VERSION=2.2.4
if [ "$(node -p "try{require('./.node/node_modules/kafkajs/package.json').version}catch(e){''}")" != "$KAFKAJS_VERSION" ]; then
  mkdir -p .node
  npm install --prefix .node --no-audit --no-fund --silent "kafkajs@$KAFKAJS_VERSION"
fi
echo "test environment ready: $(kcat -V 2>&1 | head -1); $(.venv/bin/python -c 'import confluent_kafka,kafka;print("confluent-kafka",confluent_kafka.version()[0],"librdkafka",confluent_kafka.libversion()[0],"kafka-python",kafka.__version__)'); node $(node --version), kafkajs $(node -p "require('./.node/node_modules/kafkajs/package.json').version")"
