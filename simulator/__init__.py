"""The simulated outside world: the clinic's systems as the pipeline meets them. ``generate`` makes a
deterministic world (clinic reference data, appointment events, feedback files, a manifest of what a
correct pipeline must end with) and ``produce`` plays the appointment system publishing its events to
Kafka. It imports only the runtime: nothing of the loaders, so it can never agree with them by accident."""
