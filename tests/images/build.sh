#!/usr/bin/env bash
# Builds the Docker images the tests run, locally (no registry is reachable): a root
# filesystem of Debian's statically linked busybox, imported with `docker import`.
#   cairn-test/busybox  a shell and the busybox tools
#   million12/nginx     the image of shared/examples/nginx-app.json: serves /data/www over HTTP
#                       on port 80 (busybox httpd standing in for nginx, same port and root)
# Idempotent: an image already built from the same busybox is kept.
set -euo pipefail

if ! command -v docker >/dev/null 2>&1; then
  echo "docker: not installed; Docker tests will fail" >&2
  exit 1
fi
if [ ! -x /bin/busybox ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static
fi
stamp=$(sha256sum /bin/busybox | cut -c1-12)
built() { [ "$(docker image inspect -f '{{index .Config.Labels "busybox"}}' "$1" 2>/dev/null)" = "$stamp" ]; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/bin "$root"/tmp "$root"/etc "$root"/data/www "$root"/proc "$root"/sys "$root"/dev
cp /bin/busybox "$root"/bin/busybox
for tool in $(/bin/busybox --list); do
  [ "$tool" = busybox ] || ln -sf busybox "$root/bin/$tool"
done
echo 'root:x:0:0:root:/:/bin/sh' > "$root"/etc/passwd
echo 'root:x:0:' > "$root"/etc/group
echo '<h1>served by cairn</h1>' > "$root"/data/www/index.html

if ! built cairn-test/busybox; then
  tar -C "$root" -c . | docker import \
    --change "LABEL busybox=$stamp" \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' \
    - cairn-test/busybox:latest >/dev/null
fi
if ! built million12/nginx; then
  tar -C "$root" -c . | docker import \
    --change "LABEL busybox=$stamp" \
    --change 'ENV PATH=/bin' \
    --change 'EXPOSE 80' \
    --change 'CMD ["/bin/sh", "-c", "[ -e /data/www/index.html ] || echo \"<h1>served by cairn</h1>\" > /data/www/index.html; exec httpd -f -v -p 80 -h /data/www"]' \
    - million12/nginx:latest >/dev/null
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(cairn-test/busybox|million12/nginx):'
