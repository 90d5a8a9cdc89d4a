#!/usr/bin/env python3
"""Writes the example IoT readings as JSON lines, with the workload of the
Flink anchor (shared/bench/flink): event i has execution_time
1_700_000_000_000 + 5*i ms, device_id 1 + splitmix64(i) mod K and
temperature 333 + 50*u in kelvin, u = (splitmix64(i ^ 0x5DEECE66D) >> 11) * 2^-53.

usage: gen_readings.py N [K] > readings.jsonl
"""
import sys

MASK = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def main():
    n = int(sys.argv[1])
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    out = sys.stdout
    for i in range(n):
        device = 1 + splitmix64(i) % k
        u = (splitmix64(i ^ 0x5DEECE66D) >> 11) * 2.0**-53
        out.write('{"device_id": %d, "temperature": %r, "execution_time": %d}\n'
                  % (device, 333 + 50 * u, 1_700_000_000_000 + 5 * i))


if __name__ == "__main__":
    main()
