#!/bin/sh
# Stands in for a database server's set-up: records the database's name.
set -e
mkdir -p /var/lib/fake-db
echo "$1" > /var/lib/fake-db/name
echo "database $1 ready on $(hostname)"
