"""Interlock's benchmark suite: `python -m benchmarks` (see `benchmarks/__main__.py`).

Every workload is measured on its floor (plain asyncio, written here) and on the engine in the
same process and the same run, so the ratios printed compare like with like on this machine.
The modules, one per group of workloads:

- `engine_bench`: W1 fan-out, W2 chain, W3 timeouts, W4 cancellation;
- `store_bench`: W5 store appends and cross-process following, W6 fold and resume;
- `cold_start`: W7 whole-process start of the `interlock` command;
- `console_bench`: W8 DAG layout and the console's key-to-screen latency under load, and the
  console-attached variants of W1 and W2;
- `peers`: the same W1-W4 on Prefect, Dagster and Apache Hamilton (`--peers`), each in a
  process of its own;
- `side_by_side`: `--baseline REV`, W1 and W2 of this tree and of a git revision in one run;
- `report`: the table and `RESULTS.md`.

What the figures taught, and why the hot path is built as it is: `NOTES.md`.
"""
