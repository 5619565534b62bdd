"""`make bench`: performance as ratios against references measured in the same run.

Each case module in CASES exposes ``run(ctx: BenchContext) -> list[Result]``. The harness prints one
table and writes the same figures as JSON to ``.local/bench/results.json``.
"""

# Order matters: the COPY reference runs first so every later case can report its ratio to it.
CASES = [
    "benchmarks.copy_reference",
    "benchmarks.dbt_build",
    # The hourly run on 1M and 3M appointments of history (minutes: --only hourly to run it alone).
    "benchmarks.hourly",
    "benchmarks.consumer",
    "benchmarks.feedback_loader",
    "benchmarks.generator",
    # The ingest service and scheduled dbt runs end to end (minutes: --only latency to run it alone).
    "benchmarks.latency",
]
