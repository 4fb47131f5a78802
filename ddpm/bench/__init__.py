"""`ddpm bench`: how fast each variant trains and samples, as a fraction of this machine's matrix rate.

  measure.py        the yardstick, timed pairs, flop counts, one variant's rows, batch invariance
  report.py         the tables and the report's workloads in hours
  sampler_ratio.py  DDIM-50 against DDPM-1000 wall time, end to end
  cli.py            the command (`ddpm bench`, `python -m ddpm.bench.cli`)

Nothing is imported here, so registering the command does not load torch.
"""
