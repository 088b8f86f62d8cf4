#!/bin/sh
# Turns the box into a web server: a `web` system user, a systemd service
# serving /srv/www on port 80, a kernel setting. Idempotent: exits 100 when
# it changed something, 0 when everything was in place already.
set -eu
changed=0

if ! getent passwd web >/dev/null; then
  useradd --system --home-dir /srv/www --shell /usr/sbin/nologin web
  changed=1
fi
# The site arrives in /tmp/env-site (the `site` file step): installed when it differs.
if ! diff -r /tmp/env-site /srv/www >/dev/null 2>&1; then
  mkdir -p /srv/www
  cp -R /tmp/env-site/. /srv/www/
  changed=1
fi
if [ "$(stat -c %U /srv/www/index.html)" != web ]; then
  chown -R web:web /srv/www
  chmod 0644 /srv/www/index.html
  changed=1
fi

unit=/etc/systemd/system/web.service
wanted='[Unit]
Description=Static web server of the env example
After=network.target

[Service]
User=web
AmbientCapabilities=CAP_NET_BIND_SERVICE
ExecStart=/usr/bin/python3 -m http.server 80 --directory /srv/www
Restart=on-failure

[Install]
WantedBy=multi-user.target'
if [ "$(cat "$unit" 2>/dev/null)" != "$wanted" ]; then
  printf '%s\n' "$wanted" > "$unit"
  systemctl daemon-reload
  changed=1
fi
if ! systemctl is-enabled --quiet web; then
  systemctl enable --now web
  changed=1
fi
if ! systemctl is-active --quiet web; then
  systemctl start web
  changed=1
fi

sysctl_file=/etc/sysctl.d/60-web.conf
if [ "$(cat "$sysctl_file" 2>/dev/null)" != "net.core.somaxconn = 1024" ]; then
  echo "net.core.somaxconn = 1024" > "$sysctl_file"
  sysctl -q -p "$sysctl_file"
  changed=1
fi

if [ "$changed" = 1 ]; then
  echo "web server configured"
  exit 100
fi
echo "web server already in place"
