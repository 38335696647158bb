# shellcheck shell=bash
# Python tools for the deployment checks, each pinned and in its own venv under .tools/ (their
# dependencies clash with each other and with moto's). Sourced by scripts/test and
# scripts/lambda-build; `tool NAME PACKAGE==VERSION` installs once and prints the venv's bin dir.

tool() {
  local name=$1 spec=$2 venv="$root/.tools/$1"
  local package=${spec%%==*} version=${spec##*==}
  if ! "$venv/bin/pip" show "$package" 2>/dev/null | grep -qx "Version: $version"; then
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2
  fi
  echo "$venv/bin"
}

cfn_lint_spec="cfn-lint==1.58.0"
sam_spec="aws-sam-cli==1.170.0"
cargo_lambda_spec="cargo-lambda==1.9.2"
