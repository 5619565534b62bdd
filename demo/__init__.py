"""The guided demo (``python -m demo``, ``make demo``): the whole pipeline on generated data, told in a
screenful, with the full output in a log file."""
