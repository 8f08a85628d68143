"""Running a loaded model: devices and precision, batching, streaming decode, compile and int8."""
