"""The runner daemon: claims tasks, runs their handlers, reports progress, reaps the lost."""
