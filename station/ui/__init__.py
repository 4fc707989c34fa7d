"""The operator page (`station ui`): a local web server that runs the station's sites and streams
their progress and verdicts to the browser."""
