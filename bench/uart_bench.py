#!/usr/bin/env python3
"""The UART benchmark: otagw (otagwd + otagw-devsim) against ZMODEM (lrzsz sz/rz), in the same
run, over the same emulated line (otagw-linkemu: exact 8N1 pacing, one-way latency, bit errors
from a fixed seed), with the same image.

For every line (baud x latency x bit error rate) it starts the link emulator twice with the same
seed: once for otagw (the Memfault stand-in serves the image, otagwd opens one end as its UART,
otagw-devsim the other, and the device's events give the timings), once for ZMODEM (rz on the
device end, sz on the gateway end). Goodput is image bytes per second as a percentage of the
line rate, baud / 10 bytes per second for 8N1:

  otagw   from the first DATA byte at the device to the device's RESULT (the image verified),
          and the whole session from the HELLO the gateway answered;
  ZMODEM  from sz's start to sz's exit (rz has acknowledged the whole file), and to rz's exit,
          which now and then waits out its 30 s timeout for sz's final "OO" (see
          BENCHMARKS.md).

It prints figures and targets side by side; it is not a pass/fail test.

Usage: bench/uart_bench.py [--build build] [--quick] [options]    (see --help)
"""
import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TARGETS = {0.0: ">= 98", 1e-6: ">= 90", 1e-5: ">= 70"}
ZMODEM_REF = {0.0: "~96.5", 1e-6: "~12", 1e-5: "~8"}
PROJECT_KEY = "0123456789abcdef0123456789abcdef"
HW, SWTYPE, FROM, TO = "bench-board", "main", "1.0.0", "1.1.0"


def die(msg):
    print(f"uart_bench: {msg}", file=sys.stderr)
    sys.exit(1)


def firmware_image(size, seed):
    """A firmware-like image: code-like random bytes with zero-filled stretches (padding, .bss
    initialisers, unused vectors), which is what COBS sees in practice. The same for both
    protocols; ZMODEM does not compress."""
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        if rnd.random() < 0.08:
            out += bytes(rnd.randint(16, 512))
        else:
            out += rnd.randbytes(rnd.randint(64, 2048))
    return bytes(out[:size])


class Procs:
    """Every child of one run, stopped in reverse order however the run ends."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def start_linkemu(procs, build, d, line, seed):
    gw, dev = os.path.join(d, "gw.tty"), os.path.join(d, "dev.tty")
    out = open(os.path.join(d, "linkemu.out"), "w")
    procs.start([os.path.join(build, "bench/otagw-linkemu"), "-b", str(line["baud"]), "-l",
                 str(line["latency"]), "-e", repr(line["ber"]), "-s", str(seed), gw, dev],
                stdout=out, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists(gw) and os.path.exists(dev), 10, "otagw-linkemu")
    return gw, dev


def run_zmodem(build, image_path, size, line, seed, timeout):
    d = tempfile.mkdtemp(prefix="bench-zmodem-")
    procs = Procs()
    try:
        gw, dev = start_linkemu(procs, build, d, line, seed)
        rx = os.path.join(d, "rx")
        os.mkdir(rx)
        with open(dev, "r+b", buffering=0) as dfd, open(gw, "r+b", buffering=0) as gfd:
            rz = procs.start(["rz", "-b", "-y", "-q"], cwd=rx, stdin=dfd, stdout=dfd,
                             stderr=subprocess.DEVNULL)
            time.sleep(0.2)  # rz is waiting; the clock starts with sz
            t0 = time.monotonic()
            sz = procs.start(["sz", "-b", "-q", image_path], stdin=gfd, stdout=gfd,
                             stderr=subprocess.DEVNULL)
            # Both ends' exits, to 2 ms: sz ends the session once rz has acknowledged the
            # whole file; rz ends when the "OO" (over and out) after its ZFIN arrives, or
            # after its own timeout when that never comes.
            t_sz = t_rz = None
            while t_sz is None or t_rz is None:
                now = time.monotonic()
                if now - t0 > timeout:
                    return {"ok": False, "why": f"no result in {timeout} s"}
                if t_sz is None and sz.poll() is not None:
                    t_sz = now
                if t_rz is None and rz.poll() is not None:
                    t_rz = now
                time.sleep(0.002)
        got = os.path.join(rx, os.path.basename(image_path))
        if sz.returncode != 0 or rz.returncode != 0 or not os.path.exists(got):
            return {"ok": False, "why": f"sz exited {sz.returncode}, rz {rz.returncode}"}
        with open(got, "rb") as f, open(image_path, "rb") as g:
            if f.read() != g.read():
                return {"ok": False, "why": "the received file differs"}
        return {"ok": True, "seconds": t_sz - t0, "rz_exit": t_rz - t0}
    finally:
        procs.stop()
        shutil.rmtree(d, ignore_errors=True)


def otagwd_conf(d, info, baud):
    key = os.path.join(d, "project-key")
    with open(key, "w") as f:
        f.write(PROJECT_KEY + "\n")
    os.chmod(key, 0o600)
    conf = os.path.join(d, "otagw.conf")
    with open(conf, "w") as f:
        f.write(f"""[general]
state_dir = {d}/state
cache_dir = {d}/cache
log_level = info

[memfault]
project_key_file = {key}
base_url = {info["base_url"]}
ca_file = {info["ca_file"]}

[uart "bench"]
device = {d}/gw.tty
baud = {baud}

[dbus]
bus = none
""")
    os.chmod(conf, 0o600)
    os.makedirs(os.path.join(d, "state"))
    os.makedirs(os.path.join(d, "cache"))
    return conf


def run_otagw(build, image_path, size, line, seed, timeout, keep, devsim_args):
    d = tempfile.mkdtemp(prefix="bench-otagw-")
    procs = Procs()
    try:
        gw, dev = start_linkemu(procs, build, d, line, seed)
        info_path = os.path.join(d, "mockmf.json")
        procs.start([os.path.join(build, "tests/support/otagw-mockmf"), "-q", "-k", PROJECT_KEY,
                     "-P", f"fw.bin={image_path}", "-r", f"{HW}:{SWTYPE}:{TO}:fw.bin",
                     "-d", d, "-i", info_path], stdout=subprocess.DEVNULL,
                    stderr=open(os.path.join(d, "mockmf.log"), "w"))
        wait_for(lambda: os.path.exists(info_path), 10, "otagw-mockmf")
        with open(info_path) as f:
            info = json.load(f)
        conf = otagwd_conf(d, info, line["baud"])
        log = open(os.path.join(d, "otagwd.log"), "w")
        procs.start([os.path.join(build, "daemon/otagwd"), "-c", conf], stdout=log,
                    stderr=subprocess.STDOUT)
        events = os.path.join(d, "events.jsonl")
        dsim = procs.start([os.path.join(build, "tools/devsim/otagw-devsim"), "--tty", dev,
                            "--serial", "BENCH-1", "--hardware-version", HW, "--software-type",
                            SWTYPE, "--current-version", FROM, "--state-dir",
                            os.path.join(d, "devsim"), "--once", "--timeout", str(timeout),
                            "--events", events, "--progress", "none"] + devsim_args,
                           stdout=subprocess.DEVNULL,
                           stderr=open(os.path.join(d, "devsim.err"), "w"))
        try:
            dsim.wait(timeout=timeout + 10)
        except subprocess.TimeoutExpired:
            pass
        ev = {}
        with open(events) as f:
            for ln in f:
                e = json.loads(ln)
                ev.setdefault(e["event"], []).append(e)
        tr = ev.get("transfer", [])
        if dsim.returncode != 0 or not tr:
            with open(os.path.join(d, "devsim.err")) as f:
                why = f.read().strip().splitlines()
            return {"ok": False, "why": why[-1] if why else f"devsim exited {dsim.returncode}",
                    "dir": d}
        t = tr[-1]
        res = {"ok": True, "seconds": t["transfer_s"], "session": t["session_s"],
               "rewinds": t["rewinds"], "resent": max(0, t["data_bytes"] - size),
               "bad_frames": t["bad_frames"], "pauses": t["pauses"],
               "overrun": t["overrun_bytes"]}
        # The gateway's own count ("Sender: 82 frames, 83968 bytes sent, 18432 resent, 8
        # rewinds, 0 timeouts, payload 1024"): it includes resent bytes the line lost.
        with open(os.path.join(d, "otagwd.log")) as f:
            m = re.findall(r"Sender: .*?(\d+) resent, (\d+) rewinds, (\d+) timeouts, "
                           r"payload (\d+)", f.read())
        if m:
            res["resent"], res["rewinds"], res["timeouts"] = map(int, m[-1][:3])
            res["payload"] = int(m[-1][3])
        return res
    finally:
        procs.stop()
        if not keep:
            shutil.rmtree(d, ignore_errors=True)


def pct(size, seconds, baud):
    return 100.0 * size / seconds / (baud / 10.0)


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    try:
        with open("/etc/debian_version") as f:
            debian = f.read().strip()
    except OSError:
        debian = "not Debian"
    load = os.getloadavg()
    return (f"{model}, {os.cpu_count()} cores, kernel {platform.release()}, Debian {debian}, "
            f"load average {load[0]:.2f} at start")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build", help="the CMake build directory (default build)")
    ap.add_argument("--size", type=int, default=512 * 1024, help="image bytes (default 524288)")
    ap.add_argument("--image-seed", type=int, default=1, help="seed of the image (default 1)")
    ap.add_argument("--seed", type=int, action="append",
                    help="bit error seed for otagw-linkemu; repeat to average lines with bit "
                         "errors over several (default 1)")
    ap.add_argument("--bauds", default="115200,921600")
    ap.add_argument("--latencies", default="0,4", help="one-way latency in ms")
    ap.add_argument("--bers", default="0,1e-6,1e-5")
    ap.add_argument("--only", choices=["otagw", "zmodem"], help="run one protocol only")
    ap.add_argument("--timeout", type=int, default=1800, help="per transfer, seconds")
    ap.add_argument("--quick", action="store_true",
                    help="a 64 KiB image, 921600 baud, no latency, BER 0 and 1e-5")
    ap.add_argument("--markdown", help="also write the table as Markdown to this file")
    ap.add_argument("--json", help="also write every run's raw figures to this file")
    ap.add_argument("--keep", action="store_true", help="keep otagw run directories (logs)")
    ap.add_argument("--devsim-arg", action="append",
                    help="an extra otagw-devsim argument, e.g. --devsim-arg=--sector-size=0")
    a = ap.parse_args()
    if a.quick:
        a.size, a.bauds, a.latencies, a.bers = 64 * 1024, "921600", "0", "0,1e-5"
    seeds = a.seed or [1]
    build = os.path.abspath(a.build)
    for prog in ["bench/otagw-linkemu", "daemon/otagwd", "tools/devsim/otagw-devsim",
                 "tests/support/otagw-mockmf"]:
        if not os.access(os.path.join(build, prog), os.X_OK):
            die(f"{build}/{prog} is missing: build first (cmake --build {a.build})")
    if a.only != "otagw" and not (shutil.which("sz") and shutil.which("rz")):
        die("sz/rz not found: apt-get install lrzsz (or --only otagw)")
    lines = [{"baud": int(b), "latency": int(l), "ber": float(e)}
             for b in a.bauds.split(",") for l in a.latencies.split(",")
             for e in a.bers.split(",")]

    work = tempfile.mkdtemp(prefix="bench-")
    image = os.path.join(work, "fw.bin")
    with open(image, "wb") as f:
        f.write(firmware_image(a.size, a.image_seed))
    head = (f"image {a.size} bytes (firmware-like, seed {a.image_seed}); bit error seeds "
            f"{','.join(map(str, seeds))}; {machine()}")
    print(head, flush=True)
    hdr = ("| baud | latency | BER | otagw % | target | ZMODEM % | ZMODEM % to rz exit "
           "| ZMODEM ref | otagw session % | rewinds | resent B | otagw s | ZMODEM s |")
    sep = "|" + "---|" * 13
    print(hdr)
    print(sep, flush=True)
    rows, raw = [], []
    try:
        for line in lines:
            og, zm = [], []
            # Without bit errors the seed changes nothing, and the runs are repeats.
            for seed in seeds:
                if a.only != "zmodem":
                    og.append(run_otagw(build, image, a.size, line, seed, a.timeout, a.keep,
                                        a.devsim_arg or []))
                if a.only != "otagw":
                    zm.append(run_zmodem(build, image, a.size, line, seed, a.timeout))

            def avg(runs, key):
                ok = [r[key] for r in runs if r.get("ok") and key in r]
                return sum(ok) / len(ok) if ok and len(ok) == len(runs) else None

            def num(runs, key):
                v = avg(runs, key)
                return "-" if v is None else f"{v:.0f}" if len(runs) == 1 else f"{v:.1f}"

            def fmt_pct(runs, key="seconds"):
                if not runs:
                    return "-"
                s = avg(runs, key)
                if s is None:
                    return "failed: " + "; ".join(r["why"] for r in runs if not r.get("ok"))
                return f"{pct(a.size, s, line['baud']):.1f}"

            s_o, s_z = avg(og, "seconds"), avg(zm, "seconds")
            row = (f"| {line['baud']} | {line['latency']} ms | {line['ber']:g} | "
                   f"{fmt_pct(og)} | {TARGETS.get(line['ber'], '')} | {fmt_pct(zm)} | "
                   f"{fmt_pct(zm, 'rz_exit')} | "
                   f"{ZMODEM_REF.get(line['ber'], '')} | {fmt_pct(og, 'session')} | "
                   f"{num(og, 'rewinds')} | {num(og, 'resent')} | "
                   f"{f'{s_o:.2f}' if s_o else '-'} | {f'{s_z:.2f}' if s_z else '-'} |")
            rows.append(row)
            raw.append({"line": line, "otagw": og, "zmodem": zm})
            print(row, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"header": head, "size": a.size, "seeds": seeds, "runs": raw}, f,
                      indent=1)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(head + "\n\n" + hdr + "\n" + sep + "\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
