"""One module per payload format; each has a pure `decode(...)` returning a value object or a DeadLetter."""
