#!/bin/sh
# Debian's Mosquitto MQTT broker for the line-output tests (each test starts its own broker on
# 127.0.0.1 and stops it by its PID). Does nothing when mosquitto is already there; without root
# or apt the MQTT tests skip and say why. The package's own service is not started: policy-rc.d
# refuses it, so nothing listens on the network after this script.
set -e
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-mosquitto: not root or no apt-get; the MQTT tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
if [ "$had_policy" = 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"
fi
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
if [ "$had_policy" = 0 ]; then
    rm -f "$policy"
fi
