"""Device and precision names, kept free of torch so the command line can offer them without importing it."""

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")
