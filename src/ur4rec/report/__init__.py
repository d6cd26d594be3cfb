"""Reports on finished runs: REPORT.md with plots, tables next to baselines."""
