#!/usr/bin/env python3
"""Lacero between real processes at the issue's size, with any iotaf binary (the release one).

The same round as LaceroProcessTests (Tests/IntegrationTests), without the test harness, so it
runs on a release build alone: NODES `iotaf node run` on ::1 (node 0 the master and requester,
the others storage nodes), then TRIALS times: node 0 puts a random object of MIB MiB at k-of-n,
the nodes whose fragment count grew are the holders, n-k of them chosen at random are killed with
SIGKILL (a node keeps at most one fragment of a segment, so every segment keeps at least k),
`iotaf lacero get` must return identical bytes, `check` must name no segment below k; the first
trial also repairs and checks every segment is back at n. The killed nodes restart on their data
directories before the next trial. Prints one line per trial and "P of T trials"; exits 1 unless
every trial returned identical bytes.

    scripts/lacero-trials.py [--bin .build/release/iotaf] [--nodes 20] [--mib 64] [--k 10]
                             [--n 14] [--trials 20] [--keep]
"""
import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_udp_port():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


class Mesh:
    def __init__(self, binary, count, keep):
        self.bin = binary
        self.dir = tempfile.mkdtemp(prefix="iotaf-lt-")
        self.keep = keep
        self.ports = [free_udp_port() for _ in range(count)]
        self.procs = [None] * count
        self.ids = []
        for i in range(count):
            out = self.run(["keygen", "--out", f"{self.dir}/n{i}.key", "--json"], check=True)
            self.ids.append(json.loads(out.stdout)["node_id"])

    def run(self, args, check=False, timeout=None):
        return subprocess.run([self.bin] + args, capture_output=True, text=True, check=check, timeout=timeout)

    def sock(self, i):
        return f"{self.dir}/n{i}.sock"

    def start(self, i):
        args = ["node", "run", "--key", f"{self.dir}/n{i}.key", "--listen", f"[::1]:{self.ports[i]}",
                "--control", self.sock(i), "--data", f"{self.dir}/d{i}", "--log-level", "warning", "--mode", "master"]
        if i == 0:
            args.append("--is-master")
        else:
            args += ["--master", f"[::1]:{self.ports[0]}", "--lacero-store", "--lacero-keep-probability", "0.5"]
        log = open(f"{self.dir}/n{i}.log", "ab")
        self.procs[i] = subprocess.Popen([self.bin] + args, stdout=subprocess.DEVNULL, stderr=log)

    def kill9(self, i):
        p = self.procs[i]
        if p is None:
            return
        p.send_signal(signal.SIGKILL)
        p.wait()
        self.procs[i] = None
        try:
            os.remove(self.sock(i))
        except FileNotFoundError:
            pass

    def json_of(self, args):
        try:
            r = self.run(args, timeout=30)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def held(self, i):
        obj = self.json_of(["lacero", "stats", "--control", self.sock(i), "--json"])
        return int(obj.get("fragments_held", 0)) if obj else 0

    def states(self, i):
        arr = self.json_of(["members", "--control", self.sock(i), "--json"]) or []
        return {m.get("node_id"): m.get("state") for m in arr}

    def wait_alive(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            st = self.states(0)
            if all(st.get(self.ids[j]) == "alive" for j in range(1, len(self.ids))):
                return True
            time.sleep(0.3)
        return False

    def health(self, i):
        parts = []
        s = self.json_of(["status", "--control", self.sock(i), "--json"])
        if s:
            g, c, d = s.get("gossip", {}), s.get("counters", {}), s.get("drops", {})
            parts.append(f"incarnation {g.get('incarnation')}, refutations {g.get('refutations')}, "
                         f"reliable_failed {c.get('reliable_failed')}, reliable_refused {d.get('reliable_refused')}")
        l = self.json_of(["lacero", "stats", "--control", self.sock(i), "--json"])
        if l:
            c = l.get("counters", {})
            parts.append(f"lacero paced {c.get('paced')}, rerouted {c.get('rerouted')}, retries {c.get('retries')}, drops {l.get('drops')}")
        return "; ".join(parts)

    def lacero(self, args, bound=900):
        r = self.run(["lacero"] + args + ["--control", self.sock(0), "--json", "--timeout", str(bound)])
        try:
            report = json.loads(r.stdout)
        except ValueError:
            report = {}
        return r.returncode, report, r.stderr.strip()

    def stop(self):
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=".build/release/iotaf")
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--n", type=int, default=14)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--keep", action="store_true", help="keep the nodes' directory for reading the logs")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no iotaf binary at {binary}; build it (swift build -c release --product iotaf) or give --bin")
    mesh = Mesh(binary, a.nodes, a.keep)
    passed = 0
    try:
        for i in range(a.nodes):
            mesh.start(i)
        if not mesh.wait_alive(90):
            sys.exit(f"node 0 does not see every node alive within 90 s: {mesh.states(0)}")
        for trial in range(1, a.trials + 1):
            size = a.mib << 20
            obj, meta, back = f"{mesh.dir}/object-{trial}", f"{mesh.dir}/object-{trial}.meta", f"{mesh.dir}/back-{trial}"
            with open(obj, "wb") as f:
                f.write(os.urandom(size))
            before = [mesh.held(i) for i in range(a.nodes)]
            t0 = time.time()
            status, put, err = mesh.lacero(["put", obj, "--out", meta, "--k", str(a.k), "--n", str(a.n)])
            put_s = time.time() - t0
            if status != 0:
                print(f"trial {trial}: put failed after {put_s:.1f} s: {err}; node 0: {mesh.health(0)}", flush=True)
                continue
            segments = put.get("segments", 0)
            after = [mesh.held(i) for i in range(a.nodes)]
            holders = [i for i in range(1, a.nodes) if after[i] > before[i]]
            two_of_a_segment = [i for i in range(1, a.nodes) if after[i] - before[i] > segments]
            victims = random.sample(holders, min(len(holders), a.n - a.k))
            for v in victims:
                mesh.kill9(v)
            t1 = time.time()
            gstatus, _, gerr = mesh.lacero(["get", meta, "--out", back])
            get_s = time.time() - t1
            same = gstatus == 0 and os.path.exists(back) and open(back, "rb").read() == open(obj, "rb").read()
            cstatus, check, _ = mesh.lacero(["check", meta])
            below_k = check.get("segments_below_k", ["?"])
            short = check.get("segments_below_n", [])
            repaired = ""
            if trial == 1:
                rstatus, repair, rerr = mesh.lacero(["repair", meta])
                _, again, _ = mesh.lacero(["check", meta])
                repaired = (f", repair exit {rstatus} placed {repair.get('fragments_repaired')}, then "
                            f"{len(again.get('segments_below_n', ['?']))} segments short of n")
            ok = same and not below_k and not two_of_a_segment and put.get("fragments_placed") == segments * a.n
            passed += 1 if ok else 0
            print(f"trial {trial}/{a.trials}: {a.nodes} nodes, {size} bytes, k={a.k} n={a.n}: put {put_s:.1f} s "
                  f"({put.get('fragments_placed')}/{segments * a.n} placed), killed {victims}, get {get_s:.1f} s exit {gstatus}, "
                  f"identical {same}, check exit {cstatus}: below k {below_k}, {len(short)} short of n"
                  f"{repaired}{'' if not two_of_a_segment else f', TWO OF A SEGMENT on {two_of_a_segment}'}"
                  f"{'' if gstatus == 0 else f'; get error: {gerr}'}; node 0: {mesh.health(0)}", flush=True)
            for f in (obj, back):
                if os.path.exists(f):
                    os.remove(f)
            for v in victims:
                mesh.start(v)
            if trial < a.trials and not mesh.wait_alive(90):
                print(f"restarted nodes not alive within 90 s: {mesh.states(0)}", flush=True)
                break
    finally:
        mesh.stop()
    print(f"lacero trials: {passed} of {a.trials} trials returned identical bytes "
          f"(every fragment placed, no two of a segment on a node, no segment below k)")
    sys.exit(0 if passed == a.trials else 1)


if __name__ == "__main__":
    main()
