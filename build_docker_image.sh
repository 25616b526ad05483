#!/usr/bin/env bash
# Build the connector's image as ocpp-connector:<version> and ocpp-connector:latest.
# The version is __version__ in source/connector/__init__.py. Works from any directory;
# extra arguments go to `docker build` (e.g. --no-cache, --platform linux/arm64).
set -euo pipefail

IMAGE="ocpp-connector"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
INIT="$ROOT/source/connector/__init__.py"

VERSION="$(sed -n 's/^__version__ = "\([^"]*\)".*$/\1/p' "$INIT")"
if [[ -z "$VERSION" ]]; then
    echo "build_docker_image.sh: no __version__ = \"x.y.z\" line in $INIT" >&2
    exit 1
fi

if ! command -v docker >/dev/null 2>&1; then
    echo "build_docker_image.sh: docker is not installed (no 'docker' on PATH); install Docker to build the image" >&2
    exit 1
fi
if ! docker info >/dev/null 2>&1; then
    echo "build_docker_image.sh: no Docker engine answers ('docker info' failed); start the Docker daemon or set DOCKER_HOST" >&2
    exit 1
fi

docker build \
    --file "$ROOT/Dockerfile" \
    --build-arg "VERSION=$VERSION" \
    --tag "$IMAGE:$VERSION" \
    --tag "$IMAGE:latest" \
    "$@" \
    "$ROOT"
echo "built $IMAGE:$VERSION (also tagged $IMAGE:latest)"
