# Shared by up and down: the compose command (Compose v2 plugin or the
# standalone docker-compose) and the compose file for the chosen layout.
# shellcheck shell=bash
compose_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$compose_dir/../.." && pwd)

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
else
    echo "no docker compose: install the Compose plugin or docker-compose" >&2
    exit 1
fi

# STRATA_LAYOUT=single runs one `strata --target all` instead of the cluster.
compose_file() {
    if [[ "${STRATA_LAYOUT:-cluster}" == single ]]; then
        echo "$compose_dir/docker-compose.single.yml"
    else
        echo "$compose_dir/docker-compose.yml"
    fi
}

compose() {
    "${compose_cmd[@]}" --project-directory "$compose_dir" -f "$(compose_file)" \
        -p "${COMPOSE_PROJECT_NAME:-strata}" "$@"
}
