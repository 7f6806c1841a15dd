#!/bin/sh -eux
# Enable the proxy node's units the way the package's preset file says (UNITS, space-separated).
# Every unit must exist: a missing one fails the build instead of baking a node that never starts.
# Idempotent: `systemctl preset` of an already enabled unit changes nothing.

: "${UNITS:?UNITS must list the units to enable}"

for unit in $UNITS; do
    if ! systemctl cat "$unit" >/dev/null 2>&1; then
        echo "unit $unit does not exist in the image" >&2
        exit 1
    fi
done

# shellcheck disable=SC2086 # UNITS is a list of unit names
systemctl preset $UNITS

for unit in $UNITS; do
    state=$(systemctl is-enabled "$unit" || true)
    case "$state" in
        enabled | enabled-runtime | static | alias | indirect) ;;
        *)
            echo "unit $unit is '$state' after systemctl preset (missing preset line?)" >&2
            exit 1
            ;;
    esac
done
