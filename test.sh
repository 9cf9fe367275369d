#!/usr/bin/env bash
# Runs every check and test cairn has — the same gate as CI (.ci/run calls this script).
# Installs what the tests need first, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo-nextest >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# The partition test cuts masters apart with nftables.
if ! command -v nft >/dev/null 2>&1; then
  step "installing nftables"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables
fi

# The compatibility tests drive the real Python clients (versions from compat-surface.md).
step "Python clients"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target tests/.python \
  --upgrade chronos-python==1.2.1 marathon==0.13.0 marathon-deploy==3.0.2 avmesos-cli==1.0.0
# pymesos 0.3.15 needs http-parser, whose C extension no longer builds on Python 3.11
# (compat-surface.md, section e): pymesos without it, and http-parser's own pure-Python parser.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target tests/.python \
  --upgrade --no-deps pymesos==0.3.15 six addict
if [ ! -f tests/.python/http_parser/pyparser.py ]; then
  sdist=$(mktemp -d)
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$sdist" http-parser==0.9.0
  tar xzf "$sdist"/http-parser-0.9.0.tar.gz -C "$sdist"
  mkdir -p tests/.python/http_parser
  cp "$sdist"/http-parser-0.9.0/http_parser/*.py tests/.python/http_parser/
  rm -rf "$sdist"
fi

# mesos.cli 0.1.5 (Apache's Mesos CLI) is Python 2 code: it runs on pyenv's Python 2.7, which
# this machine kind has, with the last releases of its dependencies that support 2.7
# (compat-surface.md, section e).
py2=$(ls "$HOME"/.pyenv/versions/2.7*/bin/python2.7 2>/dev/null | head -n1 || true)
if [ -z "$py2" ]; then
  echo "mesos.cli needs Python 2.7: pyenv install 2.7.18" >&2
  exit 1
fi
if [ ! -d tests/.python2/mesos/cli ]; then
  step "mesos.cli (Python 2.7)"
  "$py2" -m pip install --quiet --disable-pip-version-check --no-deps --target tests/.python2 \
    mesos.cli==0.1.5 mesos.interface==1.3.0 google-common protobuf==3.17.3 "argcomplete<2" \
    blessings futures kazoo==2.8.0 six "prettytable<1" "requests<2.28" "urllib3<2" "idna<3" \
    "chardet<5" certifi==2020.12.5 ordereddict "wcwidth<0.2.7"
fi
ln -sf "$py2" tests/.python2/python

# The UI test drives Debian's headless Chromium through chromedriver, with Selenium from PyPI
# (kept apart from the API clients, whose dependencies it would otherwise upgrade).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  step "installing chromium and chromium-driver"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target tests/.python-ui \
  --upgrade selenium==4.27.1

# The Docker tests run images built here from Debian's busybox-static (no registry is
# reachable), and a volume plugin written in Python.
step "test images"
tests/images/build.sh

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets -- -D warnings
# The vocabulary must build without the storage engine, and the pure crates must build on it
# alone (a package built by itself gets only its own features, so this proves the boundary).
cargo clippy -p cairn-log --no-default-features -- -D warnings
cargo clippy -p cairn-projections -- -D warnings

step "build (the end-to-end tests run the real binaries)"
cargo build --workspace --bins

step "doc tests"
cargo test --workspace --doc --quiet

# Last, so that its summary closes the output.
step "tests"
cargo nextest run --workspace --profile ci
