"""What a run tells people: metrics from job events, progress lines, the run report."""
