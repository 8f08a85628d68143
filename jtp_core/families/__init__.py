"""Model families: each owns its architecture, checkpoint layout, preprocessing and labels."""
