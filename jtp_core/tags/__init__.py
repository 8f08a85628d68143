"""From probabilities to tags: selection and formatting, e621 tag knowledge (categories, implications)."""
