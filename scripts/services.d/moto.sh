# shellcheck shell=bash
# The AWS emulator for the tests, *sourced* by scripts/test: installs a pinned moto into .venv
# (once), starts moto_server on a free 127.0.0.1 port, waits until it answers, and exports what
# the AWS adapter tests read. scripts/test kills the pids in `pids` on exit.

moto_version="5.2.5"
venv="$root/.venv"
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/pip" show moto 2>/dev/null | grep -qx "Version: $moto_version"; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$moto_version"
fi

moto_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
moto_log="$root/target/moto.log"
mkdir -p "$root/target"
# moto with DynamoDB requests serialized (moto's DynamoDB takes no lock; see the launcher).
"$venv/bin/python" "$root/shared/mdops-aws/emulator/moto_server.py" -H 127.0.0.1 -p "$moto_port" >"$moto_log" 2>&1 &
pids+=("$!")

# Up in under a second normally; 30 s means something is wrong (see target/moto.log).
for _ in $(seq 1 300); do
  if curl -sf -o /dev/null "http://127.0.0.1:$moto_port/moto-api/"; then break; fi
  sleep 0.1
done
if ! curl -sf -o /dev/null "http://127.0.0.1:$moto_port/moto-api/"; then
  echo "moto_server did not answer on 127.0.0.1:$moto_port; log: $moto_log" >&2
  exit 1
fi
echo "moto_server $moto_version on 127.0.0.1:$moto_port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
export AWS_REGION="us-east-1"
export AWS_ACCESS_KEY_ID="test"
export AWS_SECRET_ACCESS_KEY="test"
export MDOPS_TEST_AWS=1
