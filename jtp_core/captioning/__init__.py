"""Caption files for training: planning, streaming, modes, atomic writes."""
