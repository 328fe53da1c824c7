#!/usr/bin/env bash
# Checks the strata image on its own (no compose): it runs as uid 10001, its
# health check is `strata tool healthcheck`, it answers writes and queries,
# SIGTERM stops it with exit code 0, and /data keeps the data across a new
# container on the same volume. Skipped with one line when no Docker Engine
# answers.
#
#   tests/e2e/image_test.sh [--no-build]     (STRATA_IMAGE_BUILD_FLAGS: e.g. --debug)
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! docker info >/dev/null 2>&1; then
    echo "image test: skipped: no Docker Engine answers (docker info failed)"
    exit 0
fi
if [[ "${1:-}" != --no-build ]]; then
    # shellcheck disable=SC2086 # flags, split on purpose
    deploy/image/build --no-loadgen ${STRATA_IMAGE_BUILD_FLAGS:-} >/dev/null
fi

image=${STRATA_IMAGE:-strata:latest}
name=strata-image-test-$$
volume=$name
passed=0
failed=0
check() { # name, then a command
    local what=$1
    shift
    if "$@"; then
        echo "ok   $what"
        passed=$((passed + 1))
    else
        echo "FAIL $what"
        failed=$((failed + 1))
    fi
}
cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker volume rm "$volume" >/dev/null 2>&1 || true
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start() {
    docker run -d --name "$name" -p "127.0.0.1:$port:9090" -v "$volume:/data" "$image" >/dev/null
}
healthy() {
    for _ in $(seq 60); do
        [[ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" == healthy ]] && return 0
        sleep 1
    done
    docker logs --tail 20 "$name"
    return 1
}
query() { # tenant expr -> the JSON answer
    curl -sf -H "X-Scope-OrgID: $1" --data-urlencode "query=$2" "http://127.0.0.1:$port/api/v1/query"
}

start
check "the container becomes healthy (strata tool healthcheck)" healthy
runs_as_10001() {
    [[ "$(docker top "$name" -o pid,uid | awk 'NR > 1 { print $2 }' | sort -u)" == 10001 ]]
}
check "the process runs as uid 10001" runs_as_10001
check "the image declares USER 10001, VOLUME /data, ports 9090 and 9095" bash -c "
    [[ \$(docker image inspect -f '{{.Config.User}} {{json .Config.Volumes}} {{json .Config.ExposedPorts}}' $image) \
       == '10001:10001 {\"/data\":{}} {\"9090/tcp\":{},\"9095/tcp\":{}}' ]]"
check "the health check fails for a closed port" \
    bash -c "! docker exec $name /usr/local/bin/strata tool healthcheck --url http://127.0.0.1:1/ >/dev/null"
check "the image has no shell" bash -c "! docker exec $name /bin/sh -c true >/dev/null 2>&1"
check "remote write as tenant team-a" python3 -c "
import sys, time
sys.path.insert(0, 'deploy/loadgen')
from remote_write import Series, push
t = int(time.time() * 1000)
status, body = push('http://127.0.0.1:$port/api/v1/push',
                    [Series({'__name__': 'image_test', 'k': 'v'}, [(t - 15000, 1.5), (t, 2.5)])], 'team-a')
sys.exit(0 if status == 204 or status == 200 else print(status, body) or 1)"
reads_back() { query team-a image_test | grep -q '"2.5"'; }
isolated() { query team-b image_test | grep -q '"result":\[\]'; }
check "team-a reads it back" reads_back
check "team-b does not see it" isolated
docker stop -t 30 "$name" >/dev/null
check "SIGTERM: exit code 0" bash -c "[[ \$(docker inspect -f '{{.State.ExitCode}}' $name) == 0 ]]"
docker rm "$name" >/dev/null
start
check "a new container on the same volume is healthy" healthy
check "the data is still there" reads_back

echo "image: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
