"""Speed, memory and scaling of MFIF-TF next to baselines (not tests; not run in CI).

`python -m benchmarks.run` measures every section and writes one JSON file plus markdown
tables; see docs/benchmarks.md. Each configuration runs in a fresh process
(`benchmarks.worker`), so its peak memory is its own.
"""
