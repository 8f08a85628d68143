"""Model families: each package owns its architecture, checkpoint layout, preprocessing and labels."""
