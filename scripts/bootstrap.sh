# Sourced by scripts/run and scripts/test: a virtualenv in .venv with the locked dependencies.
# Usage: bootstrap_python <lock file>
set -euo pipefail

PIVRA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

need_apt() {
  # need_apt <command> <debian package>: install with apt-get when root, else say exactly what to run.
  if ! command -v "$1" >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "pivra: installing $2 with apt-get" >&2
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2"
    else
      echo "pivra: $1 is missing. Install it with: sudo apt-get update && sudo apt-get install -y $2" >&2
      exit 1
    fi
  fi
}

bootstrap_python() {
  local lock="$PIVRA_ROOT/$1"
  need_apt python3 python3
  if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
    echo "pivra: Python 3.11 or newer is required (found $(python3 --version 2>&1))." >&2
    exit 1
  fi
  local venv="$PIVRA_ROOT/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      local pkg="python3-venv"
      if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg"
        python3 -m venv "$venv"
      else
        echo "pivra: cannot create a virtualenv. Install it with: sudo apt-get install -y $pkg" >&2
        exit 1
      fi
    fi
  fi
  # Reinstall only when the lock file changed since the last install.
  local stamp="$venv/.installed-$(basename "$lock")"
  local digest
  digest="$(sha256sum "$lock" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    echo "pivra: installing Python dependencies from $1" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    echo "$digest" > "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
  cd "$PIVRA_ROOT"
}
