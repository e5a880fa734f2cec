#!/usr/bin/env bash
# Test prerequisites that live outside the venv: PostgreSQL, Mosquitto, Chromium, SoftHSM2, jpegtran, an RTSP server
# (Debian packages).
# Best effort: each missing piece is installed/started when we are root with apt; otherwise the tests
# that need it skip and print why. Never fails the run by itself.
set -u

have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
APT_UPDATED=0
apt_install() {
  [ "$(id -u)" = 0 ] && have apt-get || { echo "test-setup: cannot install $* (not root or no apt)"; return 1; }
  if [ "$APT_UPDATED" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || { echo "test-setup: apt-get install $* failed"; return 1; }
}

# PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`).
if ! port_open 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then apt_install postgresql; fi
  if ls /etc/postgresql >/dev/null 2>&1; then
    for v in $(ls /etc/postgresql); do pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true; done
    sleep 2
  fi
  port_open 5432 && echo "test-setup: PostgreSQL started" || echo "test-setup: PostgreSQL unavailable; postgres tests will skip"
fi

# Mosquitto on 127.0.0.1:1883 (the MQTT tests can also start their own broker from this binary).
if ! have mosquitto && ! [ -x /usr/sbin/mosquitto ]; then apt_install mosquitto || true; fi

# iproute2 (`ip netns`) for the two-node tests in network namespaces (tests/cluster; they skip without it).
if ! have ip; then apt_install iproute2 || true; fi

# jpegtran (libjpeg-turbo-progs): lossless EXIF rotation and the strict JPEG check on ingest (tests/images).
if ! have jpegtran; then apt_install libjpeg-turbo-progs || true; fi

# An RTSP server (RTSP::Server, Perl) for the live anonymization test over RTSP (tests/privacy/test_privacy_rtsp.py).
if ! have rtsp-server-perl; then apt_install rtsp-server-perl || true; fi

# Chromium for the portal tests.
if ! have chromium && ! [ -x /usr/bin/chromium ]; then apt_install chromium || true; fi

# SoftHSM2 for the PKCS#11 key-provider tests (they make their own token in a temporary directory).
if ! have softhsm2-util; then apt_install softhsm2 || true; fi

exit 0
