"""The installer's three front ends over one model: the Python API (`api`, also the
controller the others drive), the answer-file runner (`unattended`) and the terminal prompts
(`interactive`)."""
