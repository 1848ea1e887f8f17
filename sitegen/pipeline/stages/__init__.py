"""One module per product of the build (or a few made in one pass); ``pipeline/runner.py`` lists the stages in
the order they run."""
