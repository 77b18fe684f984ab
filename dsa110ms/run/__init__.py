"""Running the workflow: what the Snakefile needs, the jobs, scratch, cluster behaviour."""
