#!/bin/sh
# The `web` suite: a systemd service serving a page on port 8000.
# Idempotent: exits 100 when it changed something, 0 when all was in place.
set -eu
changed=0
if [ "$(cat /srv/www/index.html 2>/dev/null)" != "matrix web suite" ]; then
  mkdir -p /srv/www
  echo "matrix web suite" > /srv/www/index.html
  changed=1
fi
unit=/etc/systemd/system/matrix-web.service
wanted='[Unit]
Description=Web server of the env matrix example
After=network.target

[Service]
DynamicUser=yes
ExecStart=/usr/bin/python3 -m http.server 8000 --directory /srv/www
Restart=on-failure

[Install]
WantedBy=multi-user.target'
if [ "$(cat "$unit" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$unit"
  systemctl daemon-reload
  changed=1
fi
if ! systemctl is-enabled --quiet matrix-web || ! systemctl is-active --quiet matrix-web; then
  systemctl enable --now matrix-web
  changed=1
fi
if [ "$changed" = 1 ]; then
  echo "web suite configured"
  exit 100
fi
echo "web suite already in place"
