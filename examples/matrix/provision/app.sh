#!/bin/sh
# The `app` suite: a system user and its configuration file.
# Idempotent: exits 100 when it changed something, 0 when all was in place.
set -eu
changed=0
if ! getent passwd app >/dev/null; then
  useradd --system --home-dir /var/lib/app --create-home --shell /usr/sbin/nologin app
  changed=1
fi
conf=/etc/app.conf
if [ "$(cat "$conf" 2>/dev/null)" != "listen = 127.0.0.1:9000" ]; then
  echo "listen = 127.0.0.1:9000" > "$conf"
  changed=1
fi
if [ "$(stat -c '%U %a' "$conf")" != "app 640" ]; then
  chown app: "$conf"
  chmod 0640 "$conf"
  changed=1
fi
if [ "$changed" = 1 ]; then
  echo "app suite configured"
  exit 100
fi
echo "app suite already in place"
