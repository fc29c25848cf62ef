# Shared helpers for the demo and test scripts (sourced, not executed).
# Everything runs in a throwaway directory; PostgreSQL runs as the postgres
# OS user when we are root (it refuses to run as root).

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- env PATH="$PGBIN:$PATH" "$@"
  else
    env PATH="$PGBIN:$PATH" "$@"
  fi
}

# make_workdir: a fresh directory the cluster user owns; sets W.
make_workdir() {
  W=$(mktemp -d /tmp/toss_billing.XXXXXX)
  chmod 755 "$W"
  [ "$(id -u)" = 0 ] && chown postgres: "$W"
  return 0
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# The merchants (secret/client keys) every test, demo and benchmark uses; the
# emulator answers any other secret key with 401 UNAUTHORIZED_KEY, as Toss does.
MERCHANTS_FILE="$REPO/test/scripts/merchants.json"

# start_emulator LOGFILE [FLAGS...]: starts test/emulator/run on a free port
# with the project's merchants, sets EMULATOR_PID and EMULATOR_URL once it
# prints its "listening" line.
start_emulator() {
  local log=$1; shift
  "$REPO/test/emulator/run" --port 0 --merchants "$MERCHANTS_FILE" "$@" >"$log" 2>&1 &
  EMULATOR_PID=$!
  for _ in $(seq 1 100); do
    if grep -q '^listening on ' "$log"; then
      EMULATOR_URL="http://$(sed -n 's/^listening on //p' "$log" | head -1)"
      export EMULATOR_URL
      return 0
    fi
    kill -0 "$EMULATOR_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "the emulator did not start; its log:" >&2
  cat "$log" >&2
  return 1
}

# write_keys DIR SECRET_KEYS_TEXT: root key (random) and secret key file,
# readable only by the cluster user.
write_keys() {
  local dir=$1 secrets=$2
  openssl rand -hex 32 >"$dir/root.key"
  printf '%s\n' "$secrets" >"$dir/secret.keys"
  chmod 600 "$dir/root.key" "$dir/secret.keys"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir/root.key" "$dir/secret.keys"
  return 0
}
