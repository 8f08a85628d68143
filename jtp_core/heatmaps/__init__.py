"""Where in an image a tag comes from: maps, masks and overlays."""
