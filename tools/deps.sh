#!/usr/bin/env bash
# Installs the Debian 12 packages otagw needs to build, test and demo. Idempotent; only what is
# missing is installed. Run as root (or through sudo).
set -euo pipefail

pkgs=(
	# build
	build-essential cmake pkg-config clang clang-format clang-tidy cppcheck libclang-rt-14-dev
	# libraries the daemon uses
	libevent-dev libssl-dev libcurl4-openssl-dev libsqlite3-dev libsystemd-dev libjansson-dev
	libinih-dev libbluetooth-dev zlib1g-dev
	# tests, tools and benchmarks
	check openssl ca-certificates sqlite3 dbus systemd lrzsz scdoc python3 jq
	# MCU footprint
	gcc-arm-none-eabi libnewlib-arm-none-eabi
	# BLE on a real BlueZ stack inside a QEMU VM
	bluez bluez-test-tools qemu-system-x86 busybox-static kmod cpio
)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#pkgs[@]} packages present"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: missing packages: ${missing[*]}" >&2
	echo "deps: run this script as root (or: sudo $0) to install them" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
