"""The known models and tag tables, where their files live, and downloading what is missing."""
